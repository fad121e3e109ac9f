"""Tests for the model catalog: pull, verify, list and resolve, with no network at all."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants, errors

from deskpilot.models import catalog
from deskpilot.models.catalog import (
    LOCK_FILENAME,
    ModelChecksumError,
    ModelDownloadError,
    ModelEntry,
    ModelFile,
    ModelFilesMissing,
    VerifyStatus,
    default_models_dir,
    list_entries,
    pull,
    resolve_model,
    verify,
)

MODEL_BYTES = b"GGUF text model bytes"
MMPROJ_BYTES = b"GGUF mmproj bytes"
REPO = "someone/Some-Model-GGUF"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep huggingface_hub offline and pointed at a closed local port, whatever a test does."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def _file(role: str, filename: str, *, sha256: str | None = None, size: int | None = None) -> Any:
    return ModelFile(
        name=f"test-{role}",
        repo_id=REPO,
        filename=filename,
        role=role,  # type: ignore[arg-type]
        size_bytes=size,
        sha256=sha256,
        description="test file",
        patterns=("*Q4_K_M*.gguf",) if role == "model" else ("*mmproj*.gguf",),
    )


def _entry(**model_kwargs: Any) -> ModelEntry:
    return ModelEntry(
        name="test-model",
        description="a test entry",
        model=_file("model", "Some-Model.Q4_K_M.gguf", **model_kwargs),
        mmproj=_file("mmproj", "Some-Model.mmproj-f16.gguf"),
    )


@pytest.fixture
def use_catalog(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModelEntry], ModelEntry]:
    """Replace the catalog with one test entry."""

    def install(entry: ModelEntry) -> ModelEntry:
        monkeypatch.setattr(catalog, "CATALOG", (entry,))
        return entry

    return install


class FakeHub:
    """Stands in for hf_hub_download / list_repo_files: serves bytes from a dict."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.calls: list[str] = []

    def download(self, repo_id: str, filename: str, *, local_dir: Path, **_: Any) -> str:
        self.calls.append(filename)
        assert repo_id == REPO
        if filename not in self.files:
            raise errors.EntryNotFoundError(f"{filename} is not in {repo_id}")
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.files[filename])
        return str(target)

    def list_files(self, repo_id: str, **_: Any) -> list[str]:
        assert repo_id == REPO
        return ["README.md", *self.files]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """A fake hub holding the test entry's two files under their catalog names."""
    fake = FakeHub(
        {"Some-Model.Q4_K_M.gguf": MODEL_BYTES, "Some-Model.mmproj-f16.gguf": MMPROJ_BYTES}
    )
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", fake.list_files)
    return fake


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lock(models_dir: Path) -> list[dict[str, Any]]:
    return json.loads((models_dir / LOCK_FILENAME).read_text())["files"]


def test_pull_records_digests_in_lock(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry())
    paths = pull("test-model", tmp_path, progress=False)
    assert paths.model == tmp_path / "test-model" / "Some-Model.Q4_K_M.gguf"
    assert paths.mmproj.read_bytes() == MMPROJ_BYTES
    records = {r["role"]: r for r in _lock(tmp_path)}
    assert records["model"]["sha256"] == _sha(MODEL_BYTES)
    assert records["model"]["size_bytes"] == len(MODEL_BYTES)
    assert records["mmproj"]["filename"] == "Some-Model.mmproj-f16.gguf"
    assert records["mmproj"]["repo_id"] == REPO


def test_pull_verifies_known_checksum(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry(sha256=_sha(MODEL_BYTES), size=len(MODEL_BYTES)))
    paths = pull("test-model", tmp_path, progress=False)
    assert paths.model.read_bytes() == MODEL_BYTES
    # A file with a published digest is not pinned in the lock; the mmproj (no digest) is.
    assert [r["role"] for r in _lock(tmp_path)] == ["mmproj"]


def test_pull_renames_corrupt_file(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    expected = _sha(b"something else")
    use_catalog(_entry(sha256=expected))
    with pytest.raises(ModelChecksumError) as caught:
        pull("test-model", tmp_path, progress=False)
    error = caught.value
    bad = tmp_path / "test-model" / "Some-Model.Q4_K_M.gguf"
    assert not bad.exists()
    assert error.moved_to == bad.with_name(bad.name + ".corrupt")
    assert error.moved_to.read_bytes() == MODEL_BYTES
    message = str(error)
    assert "Some-Model.Q4_K_M.gguf" in message
    assert expected in message
    assert _sha(MODEL_BYTES) in message


def test_pull_size_mismatch(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry(size=len(MODEL_BYTES) + 1))
    with pytest.raises(ModelChecksumError, match="bytes"):
        pull("test-model", tmp_path, progress=False)
    assert (tmp_path / "test-model" / "Some-Model.Q4_K_M.gguf.corrupt").is_file()


def test_second_pull_checks_against_lock(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry())
    pull("test-model", tmp_path, progress=False)
    hub.files["Some-Model.Q4_K_M.gguf"] = b"tampered bytes!!!!!!!"  # same length
    with pytest.raises(ModelChecksumError, match=LOCK_FILENAME):
        pull("test-model", tmp_path, progress=False)


def test_lock_record_of_another_file_is_ignored(
    tmp_path: Path, hub: FakeHub, use_catalog: Any
) -> None:
    use_catalog(_entry())
    pull("test-model", tmp_path, progress=False)
    # The catalog now names another file (say, a re-upload); its first pull must not fail.
    renamed = _entry()
    renamed = ModelEntry(
        name=renamed.name,
        description=renamed.description,
        model=_file("model", "Some-Model-v2.Q4_K_M.gguf"),
        mmproj=renamed.mmproj,
    )
    use_catalog(renamed)
    hub.files["Some-Model-v2.Q4_K_M.gguf"] = b"the second version"
    paths = pull("test-model", tmp_path, progress=False)
    assert paths.model.name == "Some-Model-v2.Q4_K_M.gguf"
    records = {r["role"]: r for r in _lock(tmp_path)}
    assert records["model"]["sha256"] == _sha(b"the second version")


def test_pull_finds_renamed_file_by_pattern(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry())
    hub.files = {
        "Some-Model-Q4_K_M.gguf": MODEL_BYTES,
        "mmproj-Some-Model-F16.gguf": MMPROJ_BYTES,
    }
    paths = pull("test-model", tmp_path, progress=False)
    assert paths.model.name == "Some-Model-Q4_K_M.gguf"
    assert paths.mmproj.name == "mmproj-Some-Model-F16.gguf"
    assert resolve_model("test-model", models_dir=tmp_path) == (paths.model, paths.mmproj)
    assert all(r.status == VerifyStatus.OK for r in verify(tmp_path))


def test_pull_ambiguous_pattern_lists_files(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry())
    hub.files = {"A.Q4_K_M.gguf": MODEL_BYTES, "B.Q4_K_M.gguf": MODEL_BYTES}
    with pytest.raises(ModelDownloadError, match=r"A\.Q4_K_M\.gguf, B\.Q4_K_M\.gguf"):
        pull("test-model", tmp_path, progress=False)


def test_pull_network_error_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_catalog: Any
) -> None:
    use_catalog(_entry())

    def unreachable(*args: Any, **kwargs: Any) -> str:
        raise errors.LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelDownloadError) as caught:
        pull("test-model", tmp_path, progress=False)
    message = str(caught.value)
    for needle in (REPO, "Some-Model.Q4_K_M.gguf", "huggingface.co", "HF_ENDPOINT"):
        assert needle in message
    assert "deskpilot models verify" in message


def test_pull_with_real_client_offline(tmp_path: Path, use_catalog: Any) -> None:
    """The real hf_hub_download in offline mode fails without touching the network."""
    use_catalog(_entry())
    with pytest.raises(ModelDownloadError, match=r"huggingface\.co"):
        pull("test-model", tmp_path, progress=False)


def test_pull_unknown_entry(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissing, match="phi4rv-15b-q4km"):
        pull("no-such-model", tmp_path, progress=False)


def _copy_by_hand(models_dir: Path, model: bytes = MODEL_BYTES) -> Path:
    directory = models_dir / "test-model"
    directory.mkdir(parents=True)
    (directory / "Some-Model.Q4_K_M.gguf").write_bytes(model)
    (directory / "Some-Model.mmproj-f16.gguf").write_bytes(MMPROJ_BYTES)
    return directory


def test_verify_statuses(tmp_path: Path, use_catalog: Any) -> None:
    use_catalog(_entry())
    assert [r.status for r in verify(tmp_path)] == [VerifyStatus.MISSING] * 2
    assert "deskpilot models pull test-model" in verify(tmp_path)[0].detail

    directory = _copy_by_hand(tmp_path)
    assert [r.status for r in verify(tmp_path)] == [VerifyStatus.UNVERIFIED] * 2
    assert [r.status for r in verify(tmp_path, record=True)] == [VerifyStatus.RECORDED] * 2
    assert [r.status for r in verify(tmp_path)] == [VerifyStatus.OK] * 2

    (directory / "Some-Model.Q4_K_M.gguf").write_bytes(MODEL_BYTES.upper())  # same size
    statuses = [r.status for r in verify(tmp_path)]
    assert statuses == [VerifyStatus.CHECKSUM_MISMATCH, VerifyStatus.OK]
    (directory / "Some-Model.Q4_K_M.gguf").write_bytes(b"short")
    assert verify(tmp_path)[0].status == VerifyStatus.SIZE_MISMATCH


def test_verify_against_catalog_digest(tmp_path: Path, use_catalog: Any) -> None:
    use_catalog(_entry(sha256=_sha(MODEL_BYTES)))
    _copy_by_hand(tmp_path, model=MODEL_BYTES.lower())
    model_result, mmproj_result = verify(tmp_path)
    assert model_result.status == VerifyStatus.CHECKSUM_MISMATCH
    assert _sha(MODEL_BYTES) in model_result.detail
    assert mmproj_result.status == VerifyStatus.UNVERIFIED


def test_list_entries(tmp_path: Path, hub: FakeHub, use_catalog: Any) -> None:
    use_catalog(_entry())
    (row,) = list_entries(tmp_path)
    assert (row.name, row.status, row.size) == ("test-model", "missing", "unknown")
    assert row.files == ("Some-Model.Q4_K_M.gguf", "Some-Model.mmproj-f16.gguf")
    pull("test-model", tmp_path, progress=False)
    (row,) = list_entries(tmp_path)
    assert row.status == "present"
    assert row.size == f"{len(MODEL_BYTES) + len(MMPROJ_BYTES)} B"


def test_real_catalog_lists_phi4rv(tmp_path: Path) -> None:
    assert catalog.DEFAULT_MODEL in catalog.entry_names()
    rows = {row.name: row for row in list_entries(tmp_path)}
    row = rows["phi4rv-15b-q4km"]
    assert row.status == "missing"
    assert row.size == "unknown"
    entry = catalog.get_entry("phi4rv-15b-q4km")
    assert entry.model.role == "model"
    assert entry.mmproj.role == "mmproj"
    assert entry.model.sha256 is None  # unknown until the first download


def test_resolve_catalog_name_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissing, match="deskpilot models pull phi4rv-15b-q4km"):
        resolve_model("phi4rv-15b-q4km", models_dir=tmp_path)


def test_resolve_catalog_name_present(tmp_path: Path, use_catalog: Any) -> None:
    use_catalog(_entry())
    directory = _copy_by_hand(tmp_path)
    model, mmproj = resolve_model("test-model", models_dir=tmp_path)
    assert model == directory / "Some-Model.Q4_K_M.gguf"
    assert mmproj == directory / "Some-Model.mmproj-f16.gguf"


def test_resolve_path_with_sibling_mmproj(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"x")
    sibling = tmp_path / "model-mmproj-f16.gguf"
    sibling.write_bytes(b"y")
    assert resolve_model(str(model)) == (model, sibling)
    explicit = tmp_path / "other" / "proj.gguf"
    explicit.parent.mkdir()
    explicit.write_bytes(b"z")
    assert resolve_model(model, mmproj=explicit) == (model, explicit)


def test_resolve_path_without_mmproj(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"x")
    with pytest.raises(ModelFilesMissing, match="--mmproj PATH"):
        resolve_model(model)
    (tmp_path / "a-mmproj.gguf").write_bytes(b"1")
    (tmp_path / "b-mmproj.gguf").write_bytes(b"2")
    with pytest.raises(ModelFilesMissing, match=r"several mmproj files.*--mmproj PATH"):
        resolve_model(model)


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissing, match="neither a catalog model"):
        resolve_model(tmp_path / "nope.gguf")
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"x")
    with pytest.raises(ModelFilesMissing, match=r"not a \.gguf"):
        resolve_model(not_gguf)
    projector = tmp_path / "x-mmproj.gguf"
    projector.write_bytes(b"x")
    with pytest.raises(ModelFilesMissing, match="--mmproj PATH"):
        resolve_model(projector)
    with pytest.raises(ModelFilesMissing, match="does not exist"):
        resolve_model(projector, mmproj=tmp_path / "missing.gguf")


def test_default_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_MODELS", str(tmp_path / "explicit"))
    assert default_models_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DESKPILOT_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_models_dir() == tmp_path / "data" / "deskpilot" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_models_dir() == tmp_path / "home" / ".local" / "share" / "deskpilot" / "models"


def test_pull_lists_the_repository_first_and_says_what_it_chose(
        tmp_path: Path, hub: FakeHub, use_catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(_entry())
    order: list[str] = []
    listing, download = hub.list_files, hub.download
    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda *a, **k: order.append("list") or listing(*a, **k))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *a, **k: order.append("download") or download(*a, **k))
    hub.files = {"Some-Model.Q4_K_M.gguf": MODEL_BYTES, "mmproj-Some-Model-F16.gguf": MMPROJ_BYTES}
    paths = pull("test-model", tmp_path, progress=False)
    assert order == ["list", "download", "list", "download"]
    assert hub.calls == ["Some-Model.Q4_K_M.gguf", "mmproj-Some-Model-F16.gguf"]  # no misses
    assert paths.chosen[0].startswith("model: Some-Model.Q4_K_M.gguf from ")
    assert "the catalog's file name" in paths.chosen[0]
    assert paths.chosen[1].startswith("mmproj: mmproj-Some-Model-F16.gguf")
    assert "matching" in paths.chosen[1]


@pytest.mark.parametrize(("listing", "model", "mmproj"), [
    # Names from ../shared/phi4rv.md: DevQuasar's text file, jamesburton's, the mmproj name.
    (["microsoft.Phi-4-reasoning-vision-15B.f16.gguf.Q4_K_M.gguf",
      "mmproj-Phi-4-reasoning-vision-15B-f16.gguf", "README.md"],
     "microsoft.Phi-4-reasoning-vision-15B.f16.gguf.Q4_K_M.gguf",
     "mmproj-Phi-4-reasoning-vision-15B-f16.gguf"),
    (["Phi-4-reasoning-vision-15B-Q4_K_M.gguf", "Phi-4-reasoning-vision-15B-Q8_0.gguf",
      "mmproj-Phi-4-reasoning-vision-15B-f16.gguf", "mmproj-Phi-4-reasoning-vision-15B-bf16.gguf"],
     "Phi-4-reasoning-vision-15B-Q4_K_M.gguf", "mmproj-Phi-4-reasoning-vision-15B-f16.gguf"),
])
def test_real_catalog_patterns_match_the_known_names(listing: list[str], model: str,
                                                     mmproj: str) -> None:
    from deskpilot.models.catalog import DEFAULT_MODEL, _find_in_repo, get_entry

    entry = get_entry(DEFAULT_MODEL)
    assert _find_in_repo(entry.model, listing) == model
    assert _find_in_repo(entry.mmproj, listing) == mmproj

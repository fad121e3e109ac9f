"""Known model files: where they come from, where they live locally, and whether they are intact.

What is known, and what is not (checked March 2026, without access to the hub from here):

- The model is ``microsoft/Phi-4-reasoning-vision-15B``; llama.cpp supports it since PR #20168
  (text GGUF of arch ``phi3`` plus an mmproj of projector type ``phi4``). Microsoft publishes no
  GGUF files.
- Community GGUF repositories exist. ``DevQuasar/microsoft.Phi-4-reasoning-vision-15B-GGUF`` is
  listed on the hub as an image-text-to-text GGUF of the model (updated 8 March 2026); its file
  list was not seen. The text file name below follows DevQuasar's naming in their other repos
  (``<org>.<model>.<QUANT>.gguf``); the mmproj name is a guess. Other candidates:
  ``dranger003/Phi-4-reasoning-vision-15B-GGUF`` (test conversions by the author of the
  llama.cpp PR) and an AMD-only ROCmFP4 repo (not usable here).
- File names seen in third-party scripts (none confirmed against the hub): DevQuasar's text
  file ``microsoft.Phi-4-reasoning-vision-15B.f16.gguf.Q4_K_M.gguf``, jamesburton's
  ``Phi-4-reasoning-vision-15B-Q4_K_M.gguf``, and an mmproj named
  ``mmproj-Phi-4-reasoning-vision-15B-f16.gguf``; no mmproj was seen in DevQuasar's repo.
- Because names are partly guessed, ``pull`` first lists the repository, takes the catalog's
  name when it is there and otherwise the single file the glob patterns (case-insensitive)
  match, and says which file it chose; several or no matches stop it with the listing.
- Sizes and SHA-256 digests are unknown (None); the text backbone of Phi-4 at Q4_K_M is about
  9.05 GB in other repos, the F16 mmproj of a SigLIP so400m tower about 0.8-0.9 GB. Nothing is
  invented: ``pull`` computes the digest and size after the first download and records them in
  ``deskpilot-models.lock.json`` in the models directory, and ``verify`` checks files against
  the catalog values when known, else against the lock file.
"""

from __future__ import annotations

import datetime as dt
import enum
import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

LOCK_FILENAME = "deskpilot-models.lock.json"
LOCK_VERSION = 1
_HASH_CHUNK = 8 * 1024 * 1024

Role = Literal["model", "mmproj"]


class ModelError(Exception):
    """Base class of the errors raised by the catalog."""


class ModelDownloadError(ModelError):
    """A file could not be downloaded from the hub."""


class ModelFilesMissing(ModelError):
    """Model files needed to run are not on disk."""


class ModelChecksumError(ModelError):
    """A downloaded file does not match its expected size or SHA-256 digest."""

    def __init__(
        self, path: Path, expected: str, actual: str, moved_to: Path, *, hint: str = ""
    ) -> None:
        """Keep the file, the expected and actual values and where the bad file went."""
        super().__init__(
            f"{path.name} is corrupt: expected {expected}, got {actual}; "
            f"it was moved to {moved_to}. Run the pull again to download it afresh.{hint}"
        )
        self.path = path
        self.expected = expected
        self.actual = actual
        self.moved_to = moved_to


@dataclass(frozen=True)
class ModelFile:
    """One file of a catalog entry, as published on the Hugging Face hub."""

    name: str
    repo_id: str
    filename: str
    role: Role
    size_bytes: int | None
    sha256: str | None
    description: str
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    """A runnable model: a text GGUF plus its vision projector."""

    name: str
    description: str
    model: ModelFile
    mmproj: ModelFile

    @property
    def files(self) -> tuple[ModelFile, ModelFile]:
        """The text model file, then the mmproj file."""
        return (self.model, self.mmproj)


@dataclass(frozen=True)
class PulledPaths:
    """Local paths of a pulled entry's files."""

    model: Path
    mmproj: Path
    chosen: tuple[str, ...] = ()  # which file of the repository listing was taken, and why


class VerifyStatus(enum.StrEnum):
    """Outcome of checking one local file."""

    MISSING = "missing"
    OK = "ok"
    SIZE_MISMATCH = "size mismatch"
    CHECKSUM_MISMATCH = "checksum mismatch"
    UNVERIFIED = "unverified"
    RECORDED = "recorded"


@dataclass(frozen=True)
class VerifyResult:
    """The check of one catalog file in a models directory."""

    entry: str
    file: ModelFile
    path: Path
    status: VerifyStatus
    detail: str


@dataclass(frozen=True)
class EntryRow:
    """One line of ``deskpilot models list``."""

    name: str
    description: str
    files: tuple[str, ...]
    size: str
    status: Literal["present", "partial", "missing"]
    directory: Path


_PHI4RV_REPO = "DevQuasar/microsoft.Phi-4-reasoning-vision-15B-GGUF"

CATALOG: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="phi4rv-15b-q4km",
        description="Phi-4-reasoning-vision-15B: text Q4_K_M (~9 GB) + vision projector F16",
        model=ModelFile(
            name="phi4rv-15b-q4km-text",
            repo_id=_PHI4RV_REPO,
            filename="microsoft.Phi-4-reasoning-vision-15B.f16.gguf.Q4_K_M.gguf",
            role="model",
            size_bytes=None,
            sha256=None,
            description="text backbone (phi3 arch) at Q4_K_M; size and digest unknown until "
            "first download, then pinned in the lock file",
            # DevQuasar's "microsoft.Phi-4-reasoning-vision-15B.f16.gguf.Q4_K_M.gguf" and
            # jamesburton's "Phi-4-reasoning-vision-15B-Q4_K_M.gguf" both match.
            patterns=("*phi-4-reasoning-vision-15b*q4_k_m.gguf", "*q4_k_m*.gguf"),
        ),
        mmproj=ModelFile(
            name="phi4rv-15b-mmproj-f16",
            repo_id=_PHI4RV_REPO,
            filename="mmproj-Phi-4-reasoning-vision-15B-f16.gguf",
            role="mmproj",
            size_bytes=None,
            sha256=None,
            description="SigLIP-2 vision tower + projector (phi4 projector type) at F16; the "
            "file name is the one seen in third-party scripts, size and digest unknown until "
            "first download",
            patterns=("mmproj*phi-4-reasoning-vision*f16*.gguf", "*mmproj*f16*.gguf",
                      "*mmproj*.gguf"),
        ),
    ),
)


DEFAULT_MODEL = "phi4rv-15b-q4km"
"""The catalog entry used when no model is named."""


def entry_names() -> list[str]:
    """Names of all catalog entries."""
    return [entry.name for entry in CATALOG]


def get_entry(name: str) -> ModelEntry:
    """The catalog entry called ``name``; ModelFilesMissing names the known ones otherwise."""
    for entry in CATALOG:
        if entry.name == name:
            return entry
    raise ModelFilesMissing(f"no catalog model named {name!r}; known: {', '.join(entry_names())}")


def default_models_dir() -> Path:
    """``$DESKPILOT_MODELS``, else ``$XDG_DATA_HOME/deskpilot/models`` (~/.local/share/...)."""
    explicit = os.environ.get("DESKPILOT_MODELS")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "deskpilot" / "models"


# --- lock file ---------------------------------------------------------------------------


def _read_lock(models_dir: Path) -> list[dict[str, Any]]:
    path = models_dir / LOCK_FILENAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the lock file {path}: {exc}") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise ModelError(f"the lock file {path} has no 'files' list; delete it to start over")
    return [record for record in files if isinstance(record, dict)]


def _lock_record(models_dir: Path, entry: ModelEntry, file: ModelFile) -> dict[str, Any] | None:
    for record in _read_lock(models_dir):
        if record.get("entry") == entry.name and record.get("role") == file.role:
            return record
    return None


def _write_lock_record(models_dir: Path, record: dict[str, Any]) -> None:
    records = [
        r
        for r in _read_lock(models_dir)
        if not (r.get("entry") == record["entry"] and r.get("role") == record["role"])
    ]
    records.append(record)
    records.sort(key=lambda r: (str(r.get("entry")), str(r.get("role"))))
    path = models_dir / LOCK_FILENAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps({"version": LOCK_VERSION, "files": records}, indent=2) + "\n", encoding="utf-8"
    )
    tmp.replace(path)


# --- local files -------------------------------------------------------------------------


def _entry_dir(models_dir: Path, entry: ModelEntry) -> Path:
    return models_dir / entry.name


def _pick(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    for pattern in patterns:
        hits = sorted(n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower()))
        if hits:
            return hits
    return []


def local_path(models_dir: Path, entry: ModelEntry, file: ModelFile) -> Path:
    """Where ``file`` is (or would be) stored: lock file name, catalog name, then patterns."""
    directory = _entry_dir(models_dir, entry)
    record = _lock_record(models_dir, entry, file)
    if record and isinstance(record.get("filename"), str):
        return directory / record["filename"]
    exact = directory / file.filename
    if exact.is_file() or not directory.is_dir():
        return exact
    names = [p.name for p in directory.iterdir() if p.is_file() and p.suffix == ".gguf"]
    if file.role == "model":
        names = [n for n in names if "mmproj" not in n.lower()]
    hits = _pick(names, file.patterns)
    return directory / hits[0] if len(hits) == 1 else exact


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 8 MiB chunks, logging progress for large files."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    next_report = 0.1
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if total >= 20 * _HASH_CHUNK and done / total >= next_report:
                logger.info("checking %s: %d%%", path.name, int(100 * done / total))
                next_report += 0.1
    return digest.hexdigest()


def _quarantine(path: Path) -> Path:
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    return target


def _expected(
    models_dir: Path, entry: ModelEntry, file: ModelFile, path: Path
) -> tuple[int | None, str | None, str]:
    """Expected size and digest of ``path``: the catalog's when known, else the lock file's.

    A lock record only counts for the same file name from the same repository, so a catalog
    update that points at another file does not make the new download look corrupt.
    """
    record = _lock_record(models_dir, entry, file)
    size, digest, source = file.size_bytes, file.sha256, "catalog"
    if (
        record is not None
        and record.get("filename") == path.name
        and record.get("repo_id") == file.repo_id
    ):
        if size is None and isinstance(record.get("size_bytes"), int):
            size, source = record["size_bytes"], "lock file"
        if digest is None and isinstance(record.get("sha256"), str):
            digest, source = record["sha256"], "lock file"
    return size, digest, source


def _record(models_dir: Path, entry: ModelEntry, file: ModelFile, path: Path, digest: str) -> None:
    _write_lock_record(
        models_dir,
        {
            "entry": entry.name,
            "role": file.role,
            "repo_id": file.repo_id,
            "filename": path.name,
            "size_bytes": path.stat().st_size,
            "sha256": digest,
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


# --- pull --------------------------------------------------------------------------------


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Turn huggingface_hub's tqdm bars off for the duration when ``enabled`` is False."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _network_message(file: ModelFile, exc: BaseException) -> str:
    return (
        f"could not download {file.filename} from the Hugging Face repository {file.repo_id} "
        f"({type(exc).__name__}: {exc}). This machine needs access to huggingface.co (or set "
        "HF_ENDPOINT to a mirror). Without network access, copy the files by hand into the "
        "models directory and run `deskpilot models verify`."
    )


def _download(file: ModelFile, directory: Path) -> tuple[Path, str]:
    """List the repository, choose the file (the catalog's name, else the one file its
    patterns match), fetch it into ``directory`` (resuming a partial download); the path and a
    sentence saying which file was chosen and why."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        listing = huggingface_hub.list_repo_files(file.repo_id)
        name = _find_in_repo(file, listing)
        how = ("the catalog's file name" if name == file.filename
               else f"the one file matching {', '.join(file.patterns)}")
        chosen = f"{file.role}: {name} from {file.repo_id} ({how}; {len(listing)} files listed)"
        logger.info("%s", chosen)
        found = huggingface_hub.hf_hub_download(
            repo_id=file.repo_id, filename=name, local_dir=directory
        )
    except errors.RepositoryNotFoundError as exc:
        raise ModelDownloadError(
            f"the repository {file.repo_id} was not found on the hub (removed, renamed or "
            "private); download the files by hand into the models directory and run "
            "`deskpilot models verify`"
        ) from exc
    except errors.LocalEntryNotFoundError as exc:
        raise ModelDownloadError(_network_message(file, exc)) from exc
    except errors.EntryNotFoundError as exc:
        raise ModelDownloadError(
            f"{file.filename} is not in the repository {file.repo_id}; the catalog may be out "
            "of date. Copy the file by hand into the models directory and run "
            "`deskpilot models verify`."
        ) from exc
    except (OSError, getattr(errors, "HTTPError", OSError)) as exc:
        # HTTP, connection and timeout errors (OSErrors, or httpx errors in newer versions)
        raise ModelDownloadError(_network_message(file, exc)) from exc
    return Path(found), chosen


def _find_in_repo(file: ModelFile, repo_files: list[str]) -> str:
    if file.filename in repo_files:
        return file.filename
    names = [n for n in repo_files if n.lower().endswith(".gguf")]
    if file.role == "model":
        names = [n for n in names if "mmproj" not in n.lower()]
    hits = _pick(names, file.patterns)
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(sorted(names)) or "no .gguf files"
    raise ModelDownloadError(
        f"{file.filename} is not in {file.repo_id} and the patterns {', '.join(file.patterns)} "
        f"match {len(hits)} files there ({listing}); copy the right file by hand into the "
        "models directory and run `deskpilot models verify`"
    )


def _check_pulled(models_dir: Path, entry: ModelEntry, file: ModelFile, path: Path) -> None:
    """Compare a fresh download with the catalog or lock values; record it if none exist."""
    size, digest, source = _expected(models_dir, entry, file, path)
    hint = (
        f" If the file changed upstream on purpose, delete its record from {LOCK_FILENAME}."
        if source == "lock file"
        else ""
    )
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        moved = _quarantine(path)
        raise ModelChecksumError(
            path, f"{size} bytes ({source})", f"{actual_size} bytes", moved, hint=hint
        )
    actual = sha256_file(path)
    if digest is not None and actual != digest.lower():
        moved = _quarantine(path)
        raise ModelChecksumError(
            path, f"sha256 {digest} ({source})", f"sha256 {actual}", moved, hint=hint
        )
    if file.sha256 is None:
        _record(models_dir, entry, file, path, actual)


def pull(entry_name: str, models_dir: Path | None = None, *, progress: bool = True) -> PulledPaths:
    """Download an entry's files into ``models_dir/NAME`` and verify them.

    huggingface_hub shows a progress bar and resumes partial downloads. Files whose size or
    digest do not match are renamed to ``*.corrupt`` and ModelChecksumError is raised; files
    without a published digest get theirs pinned in the lock file on first download.
    """
    entry = get_entry(entry_name)
    root = models_dir or default_models_dir()
    directory = _entry_dir(root, entry)
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    choices: list[str] = []
    with _progress_bars(progress):
        for file in entry.files:
            logger.info("pulling %s from %s", file.filename, file.repo_id)
            path, chosen = _download(file, directory)
            choices.append(chosen)
            _check_pulled(root, entry, file, path)
            paths[file.role] = path
    return PulledPaths(model=paths["model"], mmproj=paths["mmproj"], chosen=tuple(choices))


# --- verify, list, resolve ---------------------------------------------------------------


def _verify_file(
    models_dir: Path, entry: ModelEntry, file: ModelFile, record: bool
) -> VerifyResult:
    path = local_path(models_dir, entry, file)

    def result(status: VerifyStatus, detail: str) -> VerifyResult:
        return VerifyResult(entry=entry.name, file=file, path=path, status=status, detail=detail)

    if not path.is_file():
        return result(VerifyStatus.MISSING, f"run `deskpilot models pull {entry.name}`")
    size, digest, source = _expected(models_dir, entry, file, path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return result(
            VerifyStatus.SIZE_MISMATCH, f"expected {size} bytes ({source}), found {actual_size}"
        )
    if digest is None and not record:
        return result(
            VerifyStatus.UNVERIFIED, "no known checksum and no lock entry; verify with --record"
        )
    actual = sha256_file(path)
    if digest is None:
        _record(models_dir, entry, file, path, actual)
        return result(VerifyStatus.RECORDED, f"sha256 {actual} recorded in {LOCK_FILENAME}")
    if actual != digest.lower():
        return result(
            VerifyStatus.CHECKSUM_MISMATCH, f"expected sha256 {digest} ({source}), found {actual}"
        )
    return result(VerifyStatus.OK, f"sha256 matches the {source}")


def verify(models_dir: Path | None = None, *, record: bool = False) -> list[VerifyResult]:
    """Check every catalog file in ``models_dir``; with ``record``, pin unverified ones."""
    root = models_dir or default_models_dir()
    return [_verify_file(root, entry, file, record) for entry in CATALOG for file in entry.files]


def _format_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def list_entries(models_dir: Path | None = None) -> list[EntryRow]:
    """Rows for ``deskpilot models list``: files, total size (or "unknown"), presence."""
    root = models_dir or default_models_dir()
    rows = []
    for entry in CATALOG:
        present = [local_path(root, entry, f).is_file() for f in entry.files]
        sizes = [_expected(root, entry, f, local_path(root, entry, f))[0] for f in entry.files]
        known = [s for s in sizes if s is not None]
        rows.append(
            EntryRow(
                name=entry.name,
                description=entry.description,
                files=tuple(local_path(root, entry, f).name for f in entry.files),
                size=_format_size(sum(known)) if len(known) == len(sizes) else "unknown",
                status="present" if all(present) else "partial" if any(present) else "missing",
                directory=_entry_dir(root, entry),
            )
        )
    return rows


def _resolve_entry(entry: ModelEntry, mmproj: Path | None, models_dir: Path) -> tuple[Path, Path]:
    model_path = local_path(models_dir, entry, entry.model)
    mmproj_path = mmproj or local_path(models_dir, entry, entry.mmproj)
    missing = [str(p) for p in (model_path, mmproj_path) if not p.is_file()]
    if missing:
        raise ModelFilesMissing(
            f"model {entry.name} is not downloaded (missing: {', '.join(missing)}); "
            f"run `deskpilot models pull {entry.name}`"
        )
    return model_path, mmproj_path


def resolve_model(
    name_or_path: str | Path, mmproj: str | Path | None = None, models_dir: Path | None = None
) -> tuple[Path, Path]:
    """Turn a catalog name or a path to a .gguf into (text model path, mmproj path)."""
    root = models_dir or default_models_dir()
    mmproj_path = Path(mmproj).expanduser() if mmproj is not None else None
    if mmproj_path is not None and not mmproj_path.is_file():
        raise ModelFilesMissing(f"the mmproj file {mmproj_path} does not exist")
    if str(name_or_path) in entry_names():
        return _resolve_entry(get_entry(str(name_or_path)), mmproj_path, root)

    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ModelFilesMissing(
            f"{name_or_path} is neither a catalog model ({', '.join(entry_names())}) nor an "
            "existing .gguf file"
        )
    if path.suffix.lower() != ".gguf":
        raise ModelFilesMissing(f"{path} is not a .gguf file")
    if mmproj_path is not None:
        return path, mmproj_path
    if "mmproj" in path.name.lower():
        raise ModelFilesMissing(
            f"{path} looks like a vision projector; pass the text model and --mmproj PATH"
        )
    siblings = sorted(
        p
        for p in path.parent.glob("*.gguf")
        if p != path and p.is_file() and "mmproj" in p.name.lower()
    )
    if len(siblings) == 1:
        return path, siblings[0]
    if not siblings:
        raise ModelFilesMissing(
            f"no mmproj file next to {path} (looked for *mmproj*.gguf in {path.parent}); "
            "pass --mmproj PATH"
        )
    names = ", ".join(p.name for p in siblings)
    raise ModelFilesMissing(
        f"several mmproj files next to {path} ({names}); choose one with --mmproj PATH"
    )

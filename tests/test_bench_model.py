"""The model benchmark: every figure is there and sane on the tiny shape; nothing about speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deskpilot.agent.bench.model import (
    BenchError,
    bench_model,
    bench_shape,
    estimate_pair_bytes,
    prepare_pair,
)
from deskpilot.models.tiny import write_tiny_pair

MODES = ("direct", "reasoning")


@pytest.mark.llama
def test_tiny_bench_reports_every_figure(tmp_path: Path) -> None:
    report = bench_model("tiny", 2, max_patches=256, modes=MODES, work_dir=tmp_path)
    json.dumps(report)  # JSON-ready as returned

    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["llama_cpp_python"]
    assert isinstance(machine["gpu_offload_supported"], bool)
    model = report["model"]
    assert model["shape"]["text_embd"] == 64 and model["weight_type"] == "F32"
    assert model["text_bytes"] > 0 and model["mmproj_bytes"] > 0
    assert Path(model["text_gguf"]).is_relative_to(tmp_path)
    assert report["load_s"] > 0

    for mode in MODES:
        figures = report["modes"][mode]
        assert figures["steps"] == 2
        assert figures["accepted_steps"] + figures["rejected_steps"] == 2
        assert 0 < figures["image_tokens_per_step"] <= 256
        prompt = figures["prompt_tokens_incl_image"]
        assert figures["image_tokens_per_step"] < prompt["min"] <= prompt["median"]
        for key in ("output_tokens_median", "image_encode_ms_median", "prefill_ms_median",
                    "prefill_text_tokens_per_s", "prefill_all_tokens_per_s",
                    "decode_ms_median", "decode_tokens_per_s", "model_ms_median",
                    "step_ms_median", "first_step_ms"):
            assert figures[key] > 0, key
        assert figures["prefill_all_tokens_per_s"] > figures["prefill_text_tokens_per_s"]
        _check_reuse(figures["prefix_reuse"])

    layouts = report["layouts"]
    for name in ("native", "joint"):
        figures = layouts[name]
        assert figures["steps"] == 2 and len(figures["evaluated_tokens_per_step"]) == 2
        assert figures["evaluated_tokens_median"] > 0
    assert layouts["joint"]["grounding_calls"] == 0
    assert layouts["native"]["calls"] == 2 + layouts["native"]["grounding_calls"]
    # In-process, a grounding call never evaluates the planner's image again.
    assert layouts["native"]["grounder_image_tokens_reevaluated"] == 0
    assert layouts["fewer_tokens_per_step"] in ("native", "joint", "tie")

    bandwidth = report["bandwidth"]
    assert bandwidth["all_threads_gbs"] > 0 and bandwidth["one_thread_gbs"] > 0
    ceiling = report["decode_ceiling"]
    assert ceiling["bytes_per_token"] == model["text_bytes"]
    assert ceiling["bandwidth_gbs"] > 0
    assert ceiling["tokens_per_s"] == pytest.approx(
        ceiling["bandwidth_gbs"] * 1e9 / model["text_bytes"], rel=1e-3)
    assert set(ceiling["measured_fraction"]) == set(MODES)
    assert all(f > 0 for f in ceiling["measured_fraction"].values())
    assert any("F32" in note and "Q4_K_M" in note for note in report["notes"])


def _check_reuse(reuse: dict[str, Any]) -> None:
    if not reuse["reported_by_runtime"]:
        return
    for step in ("step1", "step2"):
        kept = reuse[step]
        assert kept["reused_tokens"] + kept["evaluated_tokens"] == kept["prompt_tokens"]


@pytest.mark.parametrize("weight_type", ["F32", "Q8_0"])
def test_size_estimate_matches_the_written_tensors(tmp_path: Path, weight_type: str) -> None:
    shape = bench_shape("tiny", weight_type)  # type: ignore[arg-type]
    pair = write_tiny_pair(tmp_path, shape)
    for estimate, path in zip(estimate_pair_bytes(shape), (pair.model, pair.mmproj),
                              strict=True):
        # The files add metadata (the vocabulary, the template) to the tensor bytes.
        assert estimate <= path.stat().st_size <= estimate + 64 * 1024


def test_real_shape_refused_when_the_disk_is_short(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    usage = SimpleNamespace(total=100 * 2**30, used=99 * 2**30, free=2**30)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage)
    with pytest.raises(BenchError, match=r"writes about 16\.2 GB \(text GGUF 15\.6 GB"):
        prepare_pair("real", bench_shape("real"), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_real_shape_refused_without_gpu_offload(tmp_path: Path) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build offloads to a GPU")
    with pytest.raises(BenchError, match="needs GPU offload"):
        bench_model("real", 1, gpu_layers=-1, work_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_unknown_shape_and_mode_are_refused() -> None:
    with pytest.raises(BenchError, match="unknown shape"):
        bench_shape("huge")
    with pytest.raises(BenchError, match="unknown mode"):
        bench_model("tiny", 1, modes=("auto",))
    with pytest.raises(BenchError, match="unknown layouts"):
        bench_model("tiny", 1, layouts=("sideways",))

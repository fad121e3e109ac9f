"""How fast the model path runs: a random-weight Phi-4-RV-shaped GGUF pair driven by the real loop.

Speed does not depend on weight values when the work per step is the same, so a random model of
a chosen shape measures what the real one would cost at that shape: the vision encoder, the
prefill of the prompt and the screenshot, and decoding. Three shapes:

* ``tiny``: the test shape (under 1 MB, F32): checks the path, says little about speed.
* ``small``: a reduced Phi-4 layout for a 2-core CPU, about 200 MB at Q8_0 (see
  :func:`small_shape`): the real head size and GQA ratio, fewer and narrower layers.
* ``real``: the real 15B dimensions (:meth:`TinyShape.phi4rv_15b`), ~16.2 GB at Q8_0; only
  sensible with GPU offload.

Then the same N direct-mode steps run in two layouts (``layouts``): native, a planner call
with the image first and a grounding call per pointer target (which, in-process, keeps the
planner's evaluated image), and joint, one call with the image last; each reports the tokens
evaluated per step over all its calls, and the image tokens the grounding calls evaluated again.

Each mode runs N steps of :func:`agent.loop.run_agent` on a rendered 1920x1080 desktop (a fake
screen that changes a little every step), dry run, with the terminal actions left out so every
run takes all N steps. Decode speed is compared with its ceiling: memory bandwidth divided by the
bytes read per token (the text GGUF's size).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, RunResult, Status, StepRecord
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.grounding.capture import FakeScreen
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.models.grounder import BOX_GRAMMAR, GroundingPrompt
from deskpilot.models.runtime import Mode, Reply, Request, Runtime, RuntimeFailure
from deskpilot.models.tiny import (
    MMPROJ_FILENAME,
    MODEL_FILENAME,
    WEIGHT_TYPES,
    TinyPair,
    TinyShape,
    WeightType,
    default_cache_dir,
    ensure_tiny_pair,
)

log = logging.getLogger(__name__)

SHAPES = ("tiny", "small", "real")
BENCH_TASK = "open the Reports folder and rename the draft to Q3 summary"
# No done / fail / ask_user: the loop would stop at the first one, and a bench runs N steps.
BENCH_ACTIONS = frozenset({"click", "type", "key", "scroll", "wait"})
TEMPERATURE = 0.8  # the model card's default sampling; answers (and their lengths) vary
SCREEN_SIZE = (1920, 1080)
SEED = 0

# The deployed model: Q4_K_M text GGUF of the same backbone (docs: /work/shared/perf.md).
Q4_K_M_TEXT_BYTES = 9.05e9
# Bytes per stored weight of each bench type (Q8_0: 32 int8 plus one f16 scale per block).
_BYTES_PER_WEIGHT: dict[str, float] = {"F32": 4.0, "F16": 2.0, "Q8_0": 34 / 32}
_Q8_0_BLOCK = 32

_BANDWIDTH_BYTES = 256 << 20  # far beyond any last-level cache
_BANDWIDTH_REPEATS = 5
_SPACE_HEADROOM = 1.05  # metadata and filesystem slack over the estimated tensor bytes
_SPACE_RESERVE = 2 << 30  # leave the disk with at least this much free
_NOTHING = 1e-9


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (an unknown shape, too little disk, a run cut short)."""


# --- shapes ----------------------------------------------------------------------------


def small_shape(weight_type: WeightType = "Q8_0") -> TinyShape:
    """The ``small`` bench shape: ~176M text weights (~187 MB at Q8_0) plus a ~10 MB mmproj.

    Phi-4's proportions at a size a 2-core CPU runs in seconds per step: head size 128 and
    4 query heads per KV head as in the real model (40/10), ff = 3.5 x hidden (17920/5120),
    8 layers of width 1024, a 32k vocabulary (the output head is read on every token), and a
    small SigLIP-like vision tower (384 wide, 4 blocks) with the real patch size and limits.
    """
    return TinyShape.from_overrides(
        TinyShape.tiny(),
        text_embd=1024, text_layers=8, text_heads=8, text_kv_heads=2, text_ff=3584,
        text_ctx=16384, vocab_size=32768,
        vision_embd=384, vision_layers=4, vision_heads=6, vision_ff=1536,
        min_patches=256, max_patches=3600, weight_type=weight_type)


def bench_shape(name: str, weight_type: WeightType | None = None) -> TinyShape:
    """The shape called ``name``; ``weight_type`` None keeps each shape's bench default.

    Defaults: ``tiny`` F32 (the test shape as it is), ``small`` and ``real`` Q8_0, the
    smallest type the GGUF writer has and the closest to the deployed Q4_K_M.
    """
    if name == "tiny":
        base = TinyShape.tiny()
        return base if weight_type is None else TinyShape.from_overrides(
            base, weight_type=weight_type)
    if name == "small":
        return small_shape(weight_type or "Q8_0")
    if name == "real":
        return TinyShape.phi4rv_15b(weight_type=weight_type or "Q8_0")
    raise BenchError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}")


def _matrix_bytes(rows: int, cols: int, weight_type: str) -> float:
    # Q8_0 needs rows whose length is a multiple of its block; others stay F16 (tiny.py).
    if weight_type == "Q8_0" and cols % _Q8_0_BLOCK != 0:
        weight_type = "F16"
    return rows * cols * _BYTES_PER_WEIGHT[weight_type]


def estimate_pair_bytes(shape: TinyShape) -> tuple[int, int]:
    """Tensor bytes of the text GGUF and the mmproj GGUF for ``shape`` (metadata left out)."""
    wt, d, ff = shape.weight_type, shape.text_embd, shape.text_ff
    layer = (_matrix_bytes(shape.text_qkv_rows, d, wt) + _matrix_bytes(d, d, wt)
             + _matrix_bytes(2 * ff, d, wt) + _matrix_bytes(d, ff, wt) + 2 * d * 4)
    text = 2 * _matrix_bytes(shape.vocab_size, d, wt) + shape.text_layers * layer + d * 4
    e, vff, p = shape.vision_embd, shape.vision_ff, shape.patch_size
    block = (4 * _matrix_bytes(e, e, wt) + _matrix_bytes(vff, e, wt) + _matrix_bytes(e, vff, wt)
             + (4 * e + 4 * e + vff + e) * 4)  # biases and layer norms stay F32
    conv = e * 3 * p * p * (4 if wt == "F32" else 2)
    vision = (conv + e * 4 + shape.position_grid**2 * e * 4 + shape.vision_layers * block
              + _matrix_bytes(d, e, wt) + _matrix_bytes(d, d, wt) + 2 * d * 4)
    return round(text), round(vision)


def _free_bytes(directory: Path) -> int:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def prepare_pair(shape_name: str, shape: TinyShape, cache_dir: Path) -> tuple[TinyPair, bool]:
    """The cached pair for ``shape`` under ``cache_dir``, written first when absent.

    Returns the pair and whether it was already there. Refuses before writing anything when the
    disk lacks room for the estimated size.
    """
    directory = cache_dir / shape.cache_key(SEED)
    present = (directory / MODEL_FILENAME).is_file() and (directory / MMPROJ_FILENAME).is_file()
    if not present:
        text, mmproj = estimate_pair_bytes(shape)
        need = (text + mmproj) * _SPACE_HEADROOM + _SPACE_RESERVE
        free = _free_bytes(directory)
        if need > free:
            raise BenchError(
                f"the {shape_name} shape at {shape.weight_type} writes about "
                f"{(text + mmproj) / 1e9:.1f} GB (text GGUF {text / 1e9:.1f} GB, mmproj "
                f"{mmproj / 1e9:.1f} GB) but {directory} has {free / 1e9:.1f} GB free, and "
                f"{need / 1e9:.1f} GB are needed with slack and {_SPACE_RESERVE >> 30} GiB "
                "left spare; pass --work-dir on a larger disk")
        log.info("writing the %s random-weight pair (about %.0f MB at %s) into %s",
                 shape_name, (text + mmproj) / 1e6, shape.weight_type, directory)
    return ensure_tiny_pair(cache_dir, shape, seed=SEED), present


# --- memory bandwidth ----------------------------------------------------------------------


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_bandwidth(nbytes: int = _BANDWIDTH_BYTES, repeats: int = _BANDWIDTH_REPEATS,
                      threads: int | None = None) -> dict[str, Any]:
    """CPU memory bandwidth from numpy array copies: (bytes read + bytes written) / seconds.

    Measured once on all cores (the copy split across threads: numpy releases the GIL while
    copying, and llama.cpp reads weights from every thread) and once on one core.
    """
    threads = threads or os.cpu_count() or 1
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault every page in before timing
    bounds = [nbytes * i // threads for i in range(threads + 1)]
    parts = [(dst[a:b], src[a:b]) for a, b in itertools.pairwise(bounds)]
    with ThreadPoolExecutor(threads) as pool:
        def split_copy() -> None:
            list(pool.map(lambda part: np.copyto(*part), parts))

        all_s = _median_seconds(split_copy, repeats)
    one_s = _median_seconds(lambda: np.copyto(dst, src), repeats)
    return {
        "method": f"numpy copy of {nbytes >> 20} MiB, (read + written bytes) / s, "
                  f"median of {repeats}",
        "threads": threads,
        "all_threads_gbs": round(2 * nbytes / all_s / 1e9, 2),
        "one_thread_gbs": round(2 * nbytes / one_s / 1e9, 2),
    }


# --- the screen ----------------------------------------------------------------------------


class _Desktop:
    """A rendered 1920x1080 desktop: panel, file manager, editor, dialog and a task bar.

    Each grab moves the selection, adds a typed character and advances the clock, as a screen
    changes between agent steps.
    """

    _ROWS = ("Documents", "Downloads", "Music", "Pictures", "Reports", "Templates", "Videos")

    def __init__(self, size: tuple[int, int] = SCREEN_SIZE) -> None:
        self.size = size
        self._font = ImageFont.load_default(size=18)
        self._small = ImageFont.load_default(size=15)
        self._base = self._render()

    def _render(self) -> Image.Image:
        w, h = self.size
        img = Image.new("RGB", self.size)
        draw = ImageDraw.Draw(img)
        for y in range(0, h, 4):  # wallpaper gradient
            draw.rectangle((0, y, w, y + 4), fill=(30 + y // 20, 60 + y // 30, 110 + y // 25))
        draw.rectangle((0, 0, w, 32), fill=(40, 40, 44))
        for i, label in enumerate(("Activities", "Files", "Text Editor")):
            draw.text((16 + 130 * i, 7), label, fill=(235, 235, 235), font=self._small)
        self._window(draw, (80, 90, 900, 760), "Files - Home")
        draw.rectangle((81, 158, 280, 759), fill=(240, 240, 243))
        for i, name in enumerate(self._ROWS):
            draw.text((100, 176 + 40 * i), name, fill=(30, 30, 30), font=self._font)
        for i in range(12):  # file icons with names
            x, y = 310 + 140 * (i % 4), 180 + 150 * (i // 4)
            draw.rectangle((x, y, x + 80, y + 70), fill=(90, 140, 210), outline=(50, 90, 160))
            draw.text((x - 5, y + 80), f"draft-{i + 1:02d}.odt", fill=(20, 20, 20),
                      font=self._small)
        self._window(draw, (960, 140, 1840, 900), "notes.txt - Text Editor")
        for i in range(22):
            draw.text((990, 210 + 30 * i),
                      f"{i + 1:>3}  Quarterly figures line {i + 1}: revenue {1200 + 37 * i} EUR",
                      fill=(25, 25, 25), font=self._font)
        self._window(draw, (620, 420, 1160, 640), "Rename")
        draw.text((650, 500), "New name:", fill=(20, 20, 20), font=self._font)
        draw.rectangle((760, 494, 1130, 526), fill=(255, 255, 255), outline=(120, 120, 120))
        for x, label in ((880, "Cancel"), (1020, "Rename")):
            draw.rectangle((x, 580, x + 120, 620), fill=(225, 225, 230), outline=(140, 140, 150))
            draw.text((x + 28, 590), label, fill=(20, 20, 20), font=self._font)
        draw.rectangle((0, h - 48, w, h), fill=(28, 28, 32))
        return img

    def _window(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                title: str) -> None:
        x1, y1, x2, _ = box
        draw.rectangle(box, fill=(252, 252, 252), outline=(90, 90, 90))
        draw.rectangle((x1, y1, x2, y1 + 36), fill=(225, 225, 228))
        draw.text((x1 + 14, y1 + 9), title, fill=(20, 20, 20), font=self._font)
        draw.text((x1 + 14, y1 + 44), "File   Edit   View   Go   Help", fill=(40, 40, 40),
                  font=self._small)
        for i in range(3):
            cx = x2 - 24 - 28 * i
            draw.ellipse((cx - 8, y1 + 10, cx + 8, y1 + 26), fill=(190, 70 + 60 * i, 70))

    def frame(self, n: int) -> np.ndarray:
        """The screen at grab ``n``."""
        img = self._base.copy()
        draw = ImageDraw.Draw(img)
        row = n % len(self._ROWS)
        draw.rectangle((84, 170 + 40 * row, 276, 204 + 40 * row), outline=(40, 110, 220),
                       width=2)
        draw.text((770, 499), "Q3 summary"[: n + 1], fill=(0, 0, 0), font=self._font)
        w, h = self.size
        draw.text((w - 90, h - 36), f"10:{(24 + n) % 60:02d}", fill=(230, 230, 230),
                  font=self._font)
        return np.array(img)


# --- the runs ------------------------------------------------------------------------------


class _Recorder:
    """A runtime that keeps every reply of the runtime it wraps (the step records lack some)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.replies: list[Reply] = []
        self.grounding: list[bool] = []  # per reply: was it a native grounding call

    @property
    def name(self) -> str:
        """The wrapped runtime's name."""
        return self._runtime.name

    def complete(self, request: Request) -> Reply:
        """Answer through the wrapped runtime and keep the reply."""
        reply = self._runtime.complete(request)
        self.replies.append(reply)
        self.grounding.append(request.grammar == BOX_GRAMMAR)
        return reply

    def close(self) -> None:
        """Leave the wrapped runtime open: the bench closes it after every mode."""


def _run_mode(runtime: Runtime, mode: Mode, *, steps: int, max_patches: int,
              reasoning_tokens: int, desktop: _Desktop, root: Path) -> dict[str, Any]:
    """N steps of the real loop in ``mode`` (one joint call a step); their figures."""
    result, recorder = _run_loop(runtime, mode, GroundingPrompt.JOINT, steps=steps,
                                 max_patches=max_patches, reasoning_tokens=reasoning_tokens,
                                 desktop=desktop, root=root)
    if len(recorder.replies) != steps:
        raise BenchError(f"the {mode.value} run made {len(recorder.replies)} calls in {steps} "
                         "steps")
    return _mode_figures(result.steps, recorder.replies)


_RUNS = itertools.count(1)  # the run directories of one bench, numbered


def _run_loop(runtime: Runtime, mode: Mode, grounding: GroundingPrompt, *, steps: int,
              max_patches: int, reasoning_tokens: int, desktop: _Desktop,
              root: Path) -> tuple[RunResult, _Recorder]:
    """N steps of the real loop; the result and every call's reply."""
    recorder = _Recorder(runtime)
    w, h = desktop.size
    screen = FakeScreen(desktop.frame, ScreenGeometry(0, 0, w, h))

    def progress(step: StepRecord) -> None:
        log.info("%s step %d/%d: %.0f ms (model %.0f ms), %d image tokens, %d output tokens",
                 mode.value, step.index, steps, step.timings.total * 1e3,
                 step.timings.model * 1e3, step.image_tokens, step.output_tokens)

    result = run_agent(
        BENCH_TASK, runtime=recorder, screen=screen, device=None,
        record=RunDir(root, name=f"{mode.value}-{grounding.value}-{next(_RUNS)}"),
        budget=Budget(max_steps=steps, max_seconds=math.inf, max_consecutive_errors=steps + 1),
        settings=ModelSettings(mode=mode, max_patches=max_patches, allowed=BENCH_ACTIONS,
                               temperature=TEMPERATURE, max_reasoning_tokens=reasoning_tokens,
                               grounding=grounding),
        on_step=progress)
    if result.status is not Status.MAX_STEPS:
        raise BenchError(f"the {mode.value} run ended after {len(result.steps)} of {steps} "
                         f"steps: {result.status.value}: {result.message}")
    return result, recorder


def _layout_figures(recorder: _Recorder, steps: Sequence[StepRecord]) -> dict[str, Any]:
    """Tokens evaluated per step (every call of the step together), and the grounding calls'
    image reuse: what the planner + grounder layout costs against the joint call."""
    per_step: list[dict[str, int]] = []
    grounding_image_tokens = grounding_image_evaluated = 0
    for reply, grounds in zip(recorder.replies, recorder.grounding, strict=True):
        evaluated = reply.prompt_tokens - reply.reused_tokens
        image_evaluated = reply.image_tokens - reply.reused_image_tokens
        if not grounds:
            per_step.append({"evaluated": 0, "image_evaluated": 0, "text_evaluated": 0,
                             "grounding_calls": 0})
        else:
            grounding_image_tokens += reply.image_tokens
            grounding_image_evaluated += image_evaluated
        step = per_step[-1]
        step["evaluated"] += evaluated
        step["image_evaluated"] += image_evaluated
        step["text_evaluated"] += evaluated - image_evaluated
        step["grounding_calls"] += grounds
    with_ground = [s["evaluated"] for s in per_step if s["grounding_calls"]]
    return {
        "steps": len(per_step),
        "calls": len(recorder.replies),
        "grounding_calls": sum(recorder.grounding),
        "evaluated_tokens_per_step": [s["evaluated"] for s in per_step],
        "evaluated_tokens_median": _median([s["evaluated"] for s in per_step], 0),
        "evaluated_tokens_total": sum(s["evaluated"] for s in per_step),
        "evaluated_text_tokens_median": _median([s["text_evaluated"] for s in per_step], 0),
        "evaluated_image_tokens_median": _median([s["image_evaluated"] for s in per_step], 0),
        "evaluated_tokens_median_steps_with_grounding": _median(with_ground, 0),
        "grounder_image_tokens": grounding_image_tokens,
        "grounder_image_tokens_reevaluated": grounding_image_evaluated,
        "model_ms_median": _median([s.timings.model * 1e3 for s in steps]),
        "step_ms_median": _median([s.timings.total * 1e3 for s in steps]),
    }


def _run_layouts(runtime: Runtime, layouts: Sequence[GroundingPrompt], *, steps: int,
                 max_patches: int, desktop: _Desktop, root: Path) -> dict[str, Any]:
    """The same N direct-mode steps as planner + grounder (native) and as one joint call."""
    figures: dict[str, Any] = {}
    for layout in layouts:
        result, recorder = _run_loop(runtime, Mode.DIRECT, layout, steps=steps,
                                     max_patches=max_patches, reasoning_tokens=1,
                                     desktop=desktop, root=root)
        figures[layout.value] = _layout_figures(recorder, result.steps)
    if {"native", "joint"} <= set(figures):
        native = figures["native"]["evaluated_tokens_median"]
        joint = figures["joint"]["evaluated_tokens_median"]
        figures["fewer_tokens_per_step"] = ("native" if native < joint else
                                            "joint" if joint < native else "tie")
    return figures


_REUSE_FIELDS = ("reused_tokens", "reused_prompt_tokens", "cached_tokens", "prefix_tokens")


def _reused_tokens(reply: Reply) -> int | None:
    """Prompt tokens the runtime kept from an earlier call, when it says so (None otherwise)."""
    for name in _REUSE_FIELDS:
        value = getattr(reply, name, None)
        if value is None:
            value = reply.timings.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def _rate(tokens: float, seconds: float) -> float | None:
    return tokens / seconds if seconds > _NOTHING else None


def _median(values: Sequence[float | None], digits: int = 1) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None


def _mode_figures(steps: Sequence[StepRecord], replies: Sequence[Reply]) -> dict[str, Any]:
    reused = [_reused_tokens(r) for r in replies]
    evaluated = [r.prompt_tokens - (u or 0) for r, u in zip(replies, reused, strict=True)]
    prefill = [r.timings.get("prefill_s", 0.0) for r in replies]
    decode = [r.timings.get("decode_s", 0.0) for r in replies]
    figures: dict[str, Any] = {
        "steps": len(steps),
        "accepted_steps": sum(s.outcome is not Outcome.REJECTED for s in steps),
        "rejected_steps": sum(s.outcome is Outcome.REJECTED for s in steps),
        "image_tokens_per_step": _median([r.image_tokens for r in replies], 0),
        "prompt_tokens_incl_image": {"median": _median([r.prompt_tokens for r in replies], 0),
                                     "min": min(r.prompt_tokens for r in replies),
                                     "max": max(r.prompt_tokens for r in replies)},
        "output_tokens_median": _median([r.output_tokens for r in replies], 0),
        "image_encode_ms_median": _median(
            [r.timings.get("image_encode_s", 0.0) * 1e3 for r in replies]),
        "prefill_ms_median": _median([s * 1e3 for s in prefill]),
        # prefill_s is the language model's pass over every evaluated prompt position, text
        # and image embeddings alike (the vision encoder is timed apart); both rates share it.
        "prefill_text_tokens_per_s": _median(
            [_rate(n - r.image_tokens, s) for r, n, s in zip(replies, evaluated, prefill,
                                                             strict=True)]),
        "prefill_all_tokens_per_s": _median(
            [_rate(n, s) for n, s in zip(evaluated, prefill, strict=True)]),
        "decode_ms_median": _median([s * 1e3 for s in decode]),
        "decode_tokens_per_s": _median(
            [_rate(r.output_tokens, s) for r, s in zip(replies, decode, strict=True)]),
        "model_ms_median": _median([s.timings.model * 1e3 for s in steps]),
        "step_ms_median": _median([s.timings.total * 1e3 for s in steps]),
        "first_step_ms": round(steps[0].timings.total * 1e3, 1),
    }
    if reused[0] is None:
        figures["prefix_reuse"] = {"reported_by_runtime": False}
    else:
        figures["prefix_reuse"] = {
            "reported_by_runtime": True,
            **{f"step{i + 1}": {"prompt_tokens": replies[i].prompt_tokens,
                                "reused_tokens": reused[i], "evaluated_tokens": evaluated[i]}
               for i in range(min(2, len(replies)))}}
    return figures


# --- the bench -----------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    import llama_cpp

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
        # Other work on the machine slows every figure; a load near the core count says so.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2)
        if hasattr(os, "getloadavg") else None,
    }


def _decode_ceiling(text_bytes: int, bandwidth: dict[str, Any] | None,
                    bandwidth_gbs: float | None, on_gpu: bool,
                    modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Bandwidth / bytes read per token, and each mode's measured decode as a fraction of it."""
    ceiling: dict[str, Any] = {
        "bytes_per_token": text_bytes,
        # token_embd rows are looked up, not streamed: the true figure is a little lower.
        "bytes_per_token_source": "size of the text GGUF (the embedding table included)"}
    if bandwidth_gbs is not None:
        gbs, source = bandwidth_gbs, "given (--bandwidth-gbs)"
    elif on_gpu or bandwidth is None:
        ceiling.update(bandwidth_gbs=None, tokens_per_s=None, note=(
            "the weights are in GPU memory: the CPU bandwidth measured here does not apply; "
            "pass --bandwidth-gbs with the GPU's memory bandwidth (e.g. H100 SXM 3350)"))
        return ceiling
    else:
        # The ceiling is an upper bound: take the better of the two measurements (on a small
        # VM one thread can already saturate memory, and two contend).
        gbs = max(bandwidth["all_threads_gbs"], bandwidth["one_thread_gbs"])
        source = "measured (the higher of all threads and one thread)"
    limit = gbs * 1e9 / text_bytes
    ceiling.update(bandwidth_gbs=gbs, bandwidth_source=source, tokens_per_s=round(limit, 1))
    ceiling["measured_fraction"] = {
        name: (round(fig["decode_tokens_per_s"] / limit, 3)
               if fig["decode_tokens_per_s"] is not None else None)
        for name, fig in modes.items()}
    # What the same bandwidth allows the deployed file: the real 15B text GGUF at Q4_K_M.
    ceiling["real_15b_q4_k_m_tokens_per_s"] = round(gbs * 1e9 / Q4_K_M_TEXT_BYTES, 1)
    return ceiling


def _notes(shape: TinyShape) -> list[str]:
    return [
        f"Weight matrices in the bench files are {shape.weight_type} "
        f"({_BYTES_PER_WEIGHT[shape.weight_type] * 8:.1f} bits per weight); the deployed "
        f"model is Q4_K_M (~4.9 bits, {Q4_K_M_TEXT_BYTES / 1e9:.2f} GB text GGUF for the "
        "real shape). Decode speed scales with the bytes read per token, so it is not "
        "comparable across types; prefill and the vision encoder are compute-bound.",
        "Weights are random: answers mean nothing, and their length varies with sampling "
        f"(temperature {TEMPERATURE}); rejected replies still cost a full model call.",
        "The random model's vocabulary is bytes plus a few merges, so text prompt tokens "
        "are roughly 3-4x what the real tokenizer makes of the same prompt; image tokens "
        "(one per 16x16 patch) are the same as the real model's.",
        "prefill_*_per_s divide by the language model's prompt pass (text and image "
        "embeddings, vision encoder excluded); decode covers the reasoning trace and the "
        "grammar-constrained answer, sampling included.",
    ]


def bench_model(shape: str = "small", steps: int = 5, *, max_patches: int = 1024,
                gpu_layers: int = 0, modes: Sequence[str] = ("direct", "reasoning"),
                reasoning_tokens: int = 64, work_dir: Path | None = None,
                bandwidth_gbs: float | None = None,
                weight_type: WeightType | None = None,
                layouts: Sequence[str] = ("native", "joint")) -> dict[str, Any]:
    """Time ``steps`` agent steps per mode on a random-weight pair of ``shape``; JSON-ready.

    ``work_dir`` holds the cached pairs (default: the tiny-model cache). ``bandwidth_gbs``
    replaces the measured CPU bandwidth in the decode ceiling (needed with GPU offload).
    """
    if steps < 1 or max_patches < 1 or reasoning_tokens < 1:
        raise BenchError("steps, max_patches and reasoning_tokens must be at least 1")
    run_modes = [_mode(m) for m in modes]
    unknown = set(layouts) - {g.value for g in GroundingPrompt}
    if unknown:
        raise BenchError(f"unknown layouts {sorted(unknown)}; choose native and/or joint")
    bench = bench_shape(shape, weight_type)
    machine = _machine()
    on_gpu = gpu_layers != 0 and machine["gpu_offload_supported"]
    if gpu_layers != 0 and not on_gpu:
        log.warning("this llama-cpp-python build has no GPU offload: every layer runs on the CPU")
    if shape == "real" and not on_gpu:
        # ~30 TFLOP per 1,000 prompt tokens: tens of minutes a step on a desktop CPU.
        raise BenchError("the real 15B shape needs GPU offload (--gpu-layers -1 on a "
                         "llama-cpp-python build with GPU support); use --shape small on a CPU")
    started = time.perf_counter()
    pair, reused_files = prepare_pair(shape, bench, work_dir or default_cache_dir())
    write_s = time.perf_counter() - started
    text_bytes, mmproj_bytes = pair.model.stat().st_size, pair.mmproj.stat().st_size
    bandwidth = None
    if bandwidth_gbs is None:
        log.info("measuring memory bandwidth")
        bandwidth = measure_bandwidth()
    n_ctx = min(bench.text_ctx, max_patches + 6144 + reasoning_tokens)
    log.info("loading the model (%.0f MB; this can take a while)", text_bytes / 1e6)
    from deskpilot.models.llamacpp import LlamaCppRuntime

    started = time.perf_counter()
    runtime = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=n_ctx, n_gpu_layers=gpu_layers)
    load_s = time.perf_counter() - started
    desktop = _Desktop()
    try:
        with tempfile.TemporaryDirectory(prefix="deskpilot-bench-") as tmp:
            figures = {m.value: _run_mode(runtime, m, steps=steps, max_patches=max_patches,
                                          reasoning_tokens=reasoning_tokens, desktop=desktop,
                                          root=Path(tmp)) for m in run_modes}
            layout_figures = _run_layouts(runtime, [GroundingPrompt(g) for g in layouts],
                                          steps=steps, max_patches=max_patches,
                                          desktop=desktop, root=Path(tmp)) if layouts else None
    finally:
        runtime.close()
    estimate = estimate_pair_bytes(bench)
    return {
        "machine": machine,
        "model": {
            "shape_name": shape,
            "shape": dataclasses.asdict(bench),
            "weight_type": bench.weight_type,
            "text_gguf": str(pair.model),
            "text_bytes": text_bytes,
            "mmproj_bytes": mmproj_bytes,
            "estimated_tensor_bytes": {"text": estimate[0], "mmproj": estimate[1]},
            "files_reused": reused_files,
            "write_s": None if reused_files else round(write_s, 2),
        },
        "settings": {"steps": steps, "modes": [m.value for m in run_modes],
                     "max_patches": max_patches, "gpu_layers": gpu_layers, "n_ctx": n_ctx,
                     "threads": os.cpu_count(), "temperature": TEMPERATURE,
                     "reasoning_tokens": reasoning_tokens, "actions": sorted(BENCH_ACTIONS),
                     "screen": f"{SCREEN_SIZE[0]}x{SCREEN_SIZE[1]} rendered desktop"},
        "load_s": round(load_s, 2),
        "modes": figures,
        "layouts": layout_figures,
        "bandwidth": bandwidth,
        "decode_ceiling": _decode_ceiling(text_bytes, bandwidth, bandwidth_gbs, on_gpu, figures),
        "notes": _notes(bench),
    }


def _mode(name: str) -> Mode:
    if name not in (Mode.DIRECT, Mode.REASONING):
        raise BenchError(f"unknown mode {name!r}; choose direct and/or reasoning")
    return Mode(name)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m deskpilot.agent.bench.model``: run the bench and print its JSON."""
    parser = argparse.ArgumentParser(prog="deskpilot bench model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="small")
    parser.add_argument("--steps", type=int, default=5, help="agent steps per mode")
    parser.add_argument("--max-patches", type=int, default=1024, help="image patch budget")
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers to offload (-1: all)")
    parser.add_argument("--modes", default="direct,reasoning",
                        help="comma-separated: direct, reasoning")
    parser.add_argument("--reasoning-tokens", type=int, default=64)
    parser.add_argument("--layouts", default="native,joint",
                        help="comma-separated, direct mode: native (planner + grounder, image "
                             "first) and/or joint (one call, image last); '' for none")
    parser.add_argument("--work-dir", type=Path, help="where the random-weight pairs are cached")
    parser.add_argument("--bandwidth-gbs", type=float,
                        help="memory bandwidth for the decode ceiling instead of measuring it")
    parser.add_argument("--weight-type", choices=WEIGHT_TYPES,
                        help="weight storage type (default: F32 for tiny, Q8_0 otherwise)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        report = bench_model(
            args.shape, args.steps, max_patches=args.max_patches, gpu_layers=args.gpu_layers,
            modes=[m.strip() for m in args.modes.split(",") if m.strip()],
            reasoning_tokens=args.reasoning_tokens, work_dir=args.work_dir,
            bandwidth_gbs=args.bandwidth_gbs, weight_type=args.weight_type,
            layouts=[g.strip() for g in args.layouts.split(",") if g.strip()])
    except (BenchError, RuntimeFailure) as exc:
        parser.exit(2, f"bench_model: {exc}\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

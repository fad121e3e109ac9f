"""Pick and open the model runtime a command asked for."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from deskpilot.models.runtime import Runtime

if TYPE_CHECKING:
    from deskpilot.models.openai import Constraint

log = logging.getLogger(__name__)

BACKENDS = ("llamacpp", "openai")


def check_backend(backend: str, base_url: str | None, *, model: str | None,
                  mmproj: Path | None = None, replay: Path | None = None,
                  constraint: str | None = None,
                  environ: Mapping[str, str] = os.environ) -> str | None:
    """The server's API root for backend ``openai`` (``base_url``, else $DESKPILOT_BASE_URL),
    checked; None for ``llamacpp``. A ValueError says, in the CLI's words, what is wrong."""
    from deskpilot.models.serving import BASE_URL_VARIABLE, parse_base_url

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend != "openai":
        for flag, value in (("--base-url", base_url), ("--constraint", constraint)):
            if value is not None:
                raise ValueError(f"{flag} is for a model server: use it with --backend openai")
        return None
    url = base_url or environ.get(BASE_URL_VARIABLE, "").strip() or None
    if url is None:
        raise ValueError("--backend openai needs the server's address: --base-url "
                         f"http://HOST:PORT/v1 or ${BASE_URL_VARIABLE} (docs/scaling.md)")
    if replay is not None:
        raise ValueError("--replay answers from a recording: it takes no --backend openai")
    if not model:
        raise ValueError("--backend openai needs --model NAME, the name the server serves the "
                         "model under (GET /v1/models lists them)")
    if mmproj is not None:
        raise ValueError("--mmproj is a local file: with --backend openai the server loads "
                         "the vision projector")
    parse_base_url(url)
    return url


def open_runtime(*, model: str | None, mmproj: Path | None, replay: Path | None,
                 n_ctx: int = 8192, gpu_layers: int = -1,
                 models_dir: Path | None = None, backend: str = "llamacpp",
                 base_url: str | None = None, constraint: Constraint | None = None) -> Runtime:
    """A scripted runtime for ``replay``; for backend ``openai`` a client of the server at
    ``base_url`` (or $DESKPILOT_BASE_URL) serving ``model``; else a tiny random-weight model
    for ``tiny``, or the catalog model or GGUF path in ``model`` (the catalog's default when
    ``None``), in this process."""
    url = check_backend(backend, base_url, model=model, mmproj=mmproj, replay=replay,
                        constraint=constraint)
    if replay is not None:
        from deskpilot.models.scripted import ScriptedRuntime

        return ScriptedRuntime.from_jsonl(replay)
    if url is not None:
        from deskpilot.models.openai import OpenAiRuntime

        assert model is not None  # check_backend insists on it
        return OpenAiRuntime(url, model, constraint=constraint or "grammar")
    from deskpilot.models.llamacpp import LlamaCppRuntime

    if model == "tiny":
        from deskpilot.models.tiny import ensure_tiny_pair

        # One cached pair serves every image budget: prepare() already keeps images inside
        # the projector's limits, so nothing depends on the pair's own maximum.
        pair = ensure_tiny_pair()
        log.info("tiny random-weight model at %s", pair.model.parent)
        return LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=n_ctx, n_gpu_layers=gpu_layers)
    from deskpilot.models.catalog import DEFAULT_MODEL, default_models_dir, resolve_model

    model_path, mmproj_path = resolve_model(model or DEFAULT_MODEL, mmproj,
                                            models_dir or default_models_dir())
    return LlamaCppRuntime(model_path, mmproj_path, n_ctx=n_ctx, n_gpu_layers=gpu_layers)

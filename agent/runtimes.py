"""Pick and open the model runtime a command asked for."""

from __future__ import annotations

import logging
from pathlib import Path

from models.runtime import Runtime

log = logging.getLogger(__name__)


def open_runtime(*, model: str | None, mmproj: Path | None, replay: Path | None,
                 n_ctx: int = 8192, gpu_layers: int = -1,
                 models_dir: Path | None = None) -> Runtime:
    """A scripted runtime for ``replay``, a tiny random-weight model for ``tiny``, else the
    catalog model or GGUF path in ``model`` (the catalog's default when ``None``)."""
    if replay is not None:
        from models.scripted import ScriptedRuntime

        return ScriptedRuntime.from_jsonl(replay)
    from models.llamacpp import LlamaCppRuntime

    if model == "tiny":
        from models.tiny import ensure_tiny_pair

        # One cached pair serves every image budget: prepare() already keeps images inside
        # the projector's limits, so nothing depends on the pair's own maximum.
        pair = ensure_tiny_pair()
        log.info("tiny random-weight model at %s", pair.model.parent)
        return LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=n_ctx, n_gpu_layers=gpu_layers)
    from models.catalog import DEFAULT_MODEL, default_models_dir, resolve_model

    model_path, mmproj_path = resolve_model(model or DEFAULT_MODEL, mmproj,
                                            models_dir or default_models_dir())
    return LlamaCppRuntime(model_path, mmproj_path, n_ctx=n_ctx, n_gpu_layers=gpu_layers)

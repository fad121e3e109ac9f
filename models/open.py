"""Open the runtime a :class:`~deskpilot.models.choice.ModelChoice` names, behind its deadline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from deskpilot.models.choice import ModelChoice

if TYPE_CHECKING:
    from deskpilot.models.runtime import Runtime

log = logging.getLogger(__name__)


def check_model(choice: ModelChoice) -> None:
    """Fail now, before anything runs, when the model's files cannot be found.

    Raises :class:`~deskpilot.models.catalog.ModelError` or ValueError; a recording, a server
    or the tiny model needs no files.
    """
    if choice.local_files:
        from deskpilot.models.catalog import DEFAULT_MODEL, default_models_dir, resolve_model

        resolve_model(choice.model or DEFAULT_MODEL, choice.mmproj,
                      choice.models_dir or default_models_dir())


def open_runtime(choice: ModelChoice) -> Runtime:
    """A scripted runtime for a replay; a client of the model server for backend ``openai``;
    else the tiny random-weight model, or the catalog model or GGUF path, in this process.

    Every call is bounded by ``choice.timeout_s`` when it is set. Raises ValueError for a choice
    that does not fit together, :class:`~deskpilot.models.catalog.ModelError` for missing
    files and :class:`~deskpilot.models.runtime.RuntimeFailure` when the model does not load.
    """
    runtime = _open(choice.checked())
    if choice.timeout_s is None:
        return runtime
    from deskpilot.models.timeout import TimeoutRuntime

    return TimeoutRuntime(runtime, choice.timeout_s)


def _open(choice: ModelChoice) -> Runtime:
    if choice.replay is not None:
        from deskpilot.models.scripted import ScriptedRuntime

        return ScriptedRuntime.from_jsonl(choice.replay)
    if choice.backend == "openai":
        from deskpilot.models.openai import OpenAiRuntime

        # checked() has filled in the address and insisted on the served model's name
        return OpenAiRuntime(choice.base_url or "", choice.model or "",
                             constraint=choice.constraint or "grammar")
    from deskpilot.models.llamacpp import LlamaCppRuntime

    if choice.is_tiny:
        from deskpilot.models.tiny import ensure_tiny_pair

        # One cached pair serves every image budget: prepare() already keeps images inside
        # the projector's limits, so nothing depends on the pair's own maximum.
        pair = ensure_tiny_pair()
        log.info("tiny random-weight model at %s", pair.model.parent)
        return LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=choice.n_ctx,
                               n_gpu_layers=choice.gpu_layers)
    from deskpilot.models.catalog import DEFAULT_MODEL, default_models_dir, resolve_model

    model_path, mmproj_path = resolve_model(choice.model or DEFAULT_MODEL, choice.mmproj,
                                            choice.models_dir or default_models_dir())
    return LlamaCppRuntime(model_path, mmproj_path, n_ctx=choice.n_ctx,
                           n_gpu_layers=choice.gpu_layers)

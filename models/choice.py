"""Which model answers and how it is reached: the choice a command makes, checked before any use.

Light on purpose (no runtime is imported here): the command line builds its options from it
before it knows whether any model will run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

Backend = Literal["llamacpp", "openai"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

Constraint = Literal["grammar", "json_schema", "none"]
"""How a model server is made to answer in the action format (see models/openai.py)."""
CONSTRAINTS: tuple[Constraint, ...] = get_args(Constraint)

TINY = "tiny"  # the model name that makes a random-weight pair on the fly


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A recording to replay, a model server, or a GGUF run in this process.

    ``model`` is a catalog name, a path to a text GGUF, :data:`TINY`, or (with backend
    ``openai``) the name the server serves the model under; ``None`` means the catalog's
    default. ``timeout_s`` bounds every call (``None``: no deadline).
    """

    model: str | None = None
    mmproj: Path | None = None
    replay: Path | None = None
    backend: Backend = "llamacpp"
    base_url: str | None = None
    constraint: Constraint | None = None
    n_ctx: int = 8192
    gpu_layers: int = -1
    timeout_s: float | None = None
    models_dir: Path | None = None

    @property
    def is_tiny(self) -> bool:
        """True for the random-weight model made on the fly."""
        return self.model == TINY

    @property
    def local_files(self) -> bool:
        """True when the model's files must be on this machine (not a recording or a server)."""
        return self.replay is None and self.backend != "openai" and not self.is_tiny

    def checked(self, environ: Mapping[str, str] = os.environ) -> ModelChoice:
        """This choice with the server's address filled in ($DESKPILOT_BASE_URL when not given).

        A ValueError says, in the command line's words, what does not fit together.
        """
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}: use one of "
                             f"{', '.join(BACKENDS)}")
        if self.backend != "openai":
            for flag, value in (("--base-url", self.base_url),
                                ("--constraint", self.constraint)):
                if value is not None:
                    raise ValueError(f"{flag} is for a model server: use it with "
                                     "--backend openai")
            return self
        from deskpilot.models.serving import BASE_URL_VARIABLE, parse_base_url

        url = self.base_url or environ.get(BASE_URL_VARIABLE, "").strip() or None
        if url is None:
            raise ValueError("--backend openai needs the server's address: --base-url "
                             f"http://HOST:PORT/v1 or ${BASE_URL_VARIABLE} (docs/scaling.md)")
        if self.replay is not None:
            raise ValueError("--replay answers from a recording: it takes no --backend openai")
        if not self.model:
            raise ValueError("--backend openai needs --model NAME, the name the server serves "
                             "the model under (GET /v1/models lists them)")
        if self.mmproj is not None:
            raise ValueError("--mmproj is a local file: with --backend openai the server loads "
                             "the vision projector")
        parse_base_url(url)
        return replace(self, base_url=url)

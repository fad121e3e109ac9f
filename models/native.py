"""Keep llama.cpp's native output off the terminal.

llama.cpp and mtmd write to C-level stderr, even with ``verbose=False``. We route their log
callbacks into Python logging, so ``--verbose`` can still show them.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("deskpilot.llama")

# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
_callbacks: list[object] = []  # ctypes callbacks must outlive every native call that may log


def _forward(level: int, text: bytes | None, _user: ctypes.c_void_p) -> None:
    if text:
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", text.decode("utf-8", "replace").rstrip())


def silence_native_logs() -> None:
    """Send llama.cpp's and mtmd's logs to the ``deskpilot.llama`` logger (idempotent)."""
    if _callbacks:
        return
    import llama_cpp
    from llama_cpp import mtmd_cpp

    callback = llama_cpp.llama_log_callback(_forward)
    _callbacks.append(callback)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_log_set(callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(callback, ctypes.c_void_p(0))

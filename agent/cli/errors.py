"""How the command line ends: its exit codes, and the one error that is the person's to fix."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl+C, or a suite stopped part way


def exit_for_interrupt(signum: int | None) -> int:
    """The exit status after Ctrl+C (``None``) or a termination signal: 128 + its number."""
    return 128 + signum if signum else EXIT_INTERRUPTED


class UserError(Exception):
    """Bad input or a missing prerequisite, reported in one line without a traceback."""

"""How the command line ends: its exit codes, and the one error that is the person's to fix."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl+C, the kill switch, or a stop with no signal known

# The one rule for a run a signal stopped, in every mode (a task in words, plain or under the
# interface; task files; --concurrency): the exit status is 128 + the number of the first
# signal that asked it to stop, as shells report it. Ctrl+C and the kill switch (which sends
# SIGINT) give 130, SIGHUP 129, SIGTERM 143; a second signal does not change it.


def exit_for_interrupt(signum: int | None) -> int:
    """The exit status after Ctrl+C (``None``) or a termination signal: 128 + its number."""
    return 128 + signum if signum else EXIT_INTERRUPTED


class UserError(Exception):
    """Bad input or a missing prerequisite, reported in one line without a traceback."""

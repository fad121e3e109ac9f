"""Test access to the library's private-display helpers."""

from grounding.xvfb import launched, wait_for_window, xvfb

__all__ = ["launched", "wait_for_window", "xvfb"]

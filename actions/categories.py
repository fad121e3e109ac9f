"""Why the safety policy stops an action: the categories, defined once.

The four approval categories are also the only names a task file's ``allow:`` list and the
command line's ``--allow`` take; the refusals nobody can approve.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """Why an action is stopped: the first four need approval, the rest are refused."""

    SENSITIVE_KEYS = "sensitive_keys"
    SENSITIVE_CLICKS = "sensitive_clicks"
    TERMINAL_TYPING = "terminal_typing"
    SECRET_TYPING = "secret_typing"
    OUT_OF_REGION = "out_of_region"
    OUT_OF_WINDOW = "out_of_window"
    FOCUS_CHANGED = "focus_changed"


APPROVAL_CATEGORIES = frozenset({Category.SENSITIVE_KEYS, Category.SENSITIVE_CLICKS,
                                 Category.TERMINAL_TYPING, Category.SECRET_TYPING})
"""The categories a person may approve, and the only names a task's ``allow`` list may use."""

REFUSAL_CATEGORIES = frozenset(Category) - APPROVAL_CATEGORIES
"""The categories nobody can approve: the action is not carried out."""

ALLOW_NAMES = tuple(c.value for c in Category if c in APPROVAL_CATEGORIES)
"""The approval categories by name, in the order of :class:`Category` (for lists and help)."""

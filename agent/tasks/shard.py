"""Split a suite over machines by file: the same files always land in the same shard.

Files are sorted by path and cut into N contiguous groups whose sizes differ by at most one
(as Playwright's ``--shard`` does), so each CI machine of a matrix takes ``--shard K/N`` and
together they run every file exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def in_shard(items: Sequence[T], shard: tuple[int, int], file_of: Callable[[T], str]
             ) -> list[T]:
    """The items whose file falls in shard ``(K, N)``, in their original order."""
    k, n = shard
    files = sorted({file_of(item) for item in items})
    mine = {f for i, f in enumerate(files) if i * n // len(files) == k - 1}
    return [item for item in items if file_of(item) in mine]

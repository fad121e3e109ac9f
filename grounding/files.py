"""Reading files whose path came from a person or a cache, without hanging or filling memory.

A path from a task file, a baseline folder or the grounding cache may name a FIFO (an open for
reading blocks until a writer comes), a device (``/dev/zero`` never ends), a symlink to one, or
a file far larger than anything deskpilot reads. :func:`read_regular_file` opens without
blocking, checks on the open descriptor (no race with a rename) that the file is a regular one,
and refuses to read more than a cap. Every reader of such a path goes through it: the task-file
loader, ``expect_file``, baselines and cache entries.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class UnreadableFile(OSError):
    """The path is not a regular file, is larger than allowed, or cannot be opened."""


def read_regular_file(path: Path | str, cap: int) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks to regular files are followed).

    Raises :class:`UnreadableFile` with a one-line reason for a FIFO, a socket, a device, a
    directory, a file larger than ``cap`` bytes, and FileNotFoundError when nothing is there.
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
        # writer; it changes nothing for a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise UnreadableFile(exc.errno, "a directory, not a file", str(path)) from None
        raise UnreadableFile(exc.errno or errno.EIO, exc.strerror or str(exc), str(path)
                             ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)})",
                                 str(path))
        if info.st_size > cap:
            raise UnreadableFile(errno.EFBIG, f"larger than {cap} bytes ({info.st_size})",
                                 str(path))
        chunks: list[bytes] = []
        size = 0
        while True:  # the file may grow while we read: the cap holds for what is read
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise UnreadableFile(errno.EFBIG, f"larger than {cap} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def reason(exc: OSError) -> str:
    """A one-line reason for a read that failed."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return exc.strerror or str(exc)

"""Reading and writing a sandbox's working folder from the host, safely.

The sandbox writes its working folder too: what it leaves there (a symbolic link named
``result.case`` pointing at the platform's secret key, a FIFO that blocks whoever opens it)
must never make the host read or write anything but a regular file inside that folder. Every
path is opened component by component, without following links, and checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1024 * 1024


class UnsafeFile(OSError):
    """What the sandbox left at a path is not a regular file the host may use."""


def _open_beneath(workdir: Path, relative: str, flags: int, create_folders: bool = False) -> int:
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise UnsafeFile(f"{relative!r} is not a path inside the working folder")
    folder = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            if create_folders:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=folder)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        # O_NONBLOCK: opening a FIFO the sandbox made must not hang the host.
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=folder)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFile(f"{relative!r} in the working folder is a link, not a regular file") from None
        raise UnsafeFile(f"{relative!r} in the working folder cannot be used: {exc.strerror}") from None
    finally:
        os.close(folder)


def _regular(fd: int, relative: str) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{relative!r} in the working folder is not a regular file")
    os.set_blocking(fd, True)
    return info


def read_bytes(workdir: Path, relative: str, limit: int) -> bytes | None:
    """A regular file of the working folder (None if there is none), at most ``limit`` bytes."""
    try:
        fd = _open_beneath(workdir, relative, os.O_RDONLY)
    except FileNotFoundError:
        return None
    info = _regular(fd, relative)
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > limit:
            raise UnsafeFile(f"{relative!r} is {info.st_size} bytes, over the limit of {limit}")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{relative!r} is over the limit of {limit} bytes")
    return data


def open_regular(workdir: Path, relative: str) -> BinaryIO:
    """A regular file of the working folder opened for reading (FileNotFoundError if there is none)."""
    fd = _open_beneath(workdir, relative, os.O_RDONLY)
    _regular(fd, relative)
    return os.fdopen(fd, "rb")


def write_from(workdir: Path, relative: str, source: BinaryIO) -> None:
    """Copy ``source`` into a new or regular file of the working folder, folders made as needed."""
    fd = _open_beneath(workdir, relative, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_folders=True)
    _regular(fd, relative)
    with os.fdopen(fd, "wb") as sink:
        while chunk := source.read(CHUNK):
            sink.write(chunk)

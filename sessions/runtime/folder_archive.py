"""A folder as a gzipped tar, the same bytes for the same files, and its safe unpacking.

Runtimes and app environments travel this way between storage and the nodes. Standard library only:
the build sandbox packs with it, inside an environment that may have nothing else.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import IO

CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    code = "bad_archive"


def pack_folder(folder: Path) -> bytes:
    """A tar.gz of ``folder``'s contents, the same bytes for the same files (sorted, no times or owners)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() or info.mode & 0o111 else 0o644
            if info.isreg():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return buffer.getvalue()


def extract(payload: IO[bytes], destination: Path) -> None:
    """Unpack a checked payload into ``destination`` (no links out, no devices, no absolute paths)."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=payload, mode="r:gz") as archive:
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"the packages could not be unpacked: {exc}") from None

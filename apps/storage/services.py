"""The storage file API: who may read and write which path, over django-storages.

Folders users reach:
- ``apps/<app>/data/``: shared by everyone granted the app; its collaborators, its owner and admins
  change it, its viewers only read it;
- ``users/<username>/``: private to that user (and admins);
- everything else is the platform's own (``packages/``, ``icons/``, ``cases/``, ``jobs/``,
  ``runtimes/``, ``environments/``, ``wheelhouse/``): admins read it, nobody changes it through
  this API (the platform's objects do, through the Django admin and their own API).
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.storage import default_storage

from apps.catalog.models import MANAGER_ACCESS, AccessLevel, App
from apps.catalog.selectors import app_access_level, apps_for_user
from pro_portal.errors import ApplicationError, Conflict, Forbidden, NotFound, TooLarge

from .backends import TEMPORARY_PREFIX

logger = logging.getLogger(__name__)
MAX_PATH = 1024
# Object storage (S3) has no empty folders: a new folder holds this empty object until files come.
# Its name has the reserved prefix, so no path can name it and no listing shows it.
FOLDER_MARKER = TEMPORARY_PREFIX + "folder"


class BadPath(ApplicationError):
    code = "bad_path"


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    is_folder: bool
    size: int | None = None
    modified: datetime | None = None


def normalize_path(raw: str) -> str:
    """A clean relative path (``a/b/c``), or :class:`BadPath` for anything that could escape."""
    if len(raw) > MAX_PATH:
        raise BadPath(f"The path is longer than {MAX_PATH} characters.")
    if "\x00" in raw or "\\" in raw or any(ord(c) < 32 for c in raw):
        raise BadPath("The path holds a backslash or a control character.")
    parts = [p for p in raw.split("/") if p not in ("",)]
    if any(p in (".", "..") for p in parts):
        raise BadPath("The path may not contain '.' or '..' segments.")
    if any(p.startswith(TEMPORARY_PREFIX) for p in parts):
        raise BadPath("Names starting with '.upload-' are reserved.")
    return "/".join(parts)


def user_folder(user: User) -> str:
    return f"users/{user.username}"


def app_folder(app_name: str) -> str:
    return f"apps/{app_name}/data"


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def can_access(user: User, path: str) -> bool:
    """Whether ``user`` may read ``path`` (a normalized path); what they may change: :func:`can_write_into`."""
    if user.is_superuser:
        return True
    if _is_within(path, user_folder(user)):
        return True
    name = _shared_app(path)
    if name is not None:
        app = App.objects.filter(name=name).first()
        return app is not None and app_access_level(user, app) is not None
    return False


def _shared_app(path: str) -> str | None:
    """The app whose shared folder holds ``path`` (a normalized path), if any."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "apps" and parts[2] == "data" else None


def _write_refusal(user: User, path: str) -> str | None:
    """Why ``user``, who may read ``path`` (a normalized path), may not change it; None if they may."""
    parts = path.split("/")
    if parts[0] == "users" and len(parts) >= 2:
        return None  # their own folder (an admin: anyone's)
    name = _shared_app(path)
    if name is not None:
        if user.is_superuser:
            return None  # also the folder an app left behind
        app = App.objects.filter(name=name).first()
        level = app_access_level(user, app) if app is not None else None
        if level in (MANAGER_ACCESS, AccessLevel.COLLABORATOR):
            return None
        return (
            f"Changing the shared files of app {name!r} (apps/{name}/data/) needs collaborator rights on the app "
            f"(or being its owner or an admin); you have {level or 'no'} access, which reads them only."
        )
    if parts[0] in ("", "apps", "users"):
        return f"{(path or '/')!r} is outside the folders that hold files: apps/<app>/data/ and users/<you>/."
    return (
        f"{parts[0]}/ is a folder of the platform's own: nobody changes it through the file API, admins neither "
        f"(the Django admin and the API's objects manage what it holds)."
    )


def can_write_into(user: User, folder: str) -> bool:
    """Whether ``user`` may put files into, make folders in and delete files from ``folder`` (a
    normalized path): a folder they may read, in their own folder or an app's shared folder they
    may change, not a level of the platform's folders (the root, ``apps/``, ``apps/<app>/``, ``users/``)."""
    return bool(folder) and can_access(user, folder) and _write_refusal(user, folder) is None


def read_only_reason(user: User, folder: str) -> str | None:
    """Why ``user`` may read but not change ``folder`` (a normalized path they may read), to show on
    the files page; None where they may change it, or where it is only a level above the folders
    users reach (the root, ``apps/``, ``apps/<app>/``, ``users/``)."""
    parts = folder.split("/")
    if (parts[0] in ("", "users") and len(parts) == 1) or (parts[0] == "apps" and len(parts) <= 2):
        return None
    return _write_refusal(user, folder)


def _require(user: User, path: str) -> None:
    if not can_access(user, path):
        # Not found, not forbidden: whether another user's file exists is not the caller's business.
        raise NotFound(f"There is no file or folder {path!r} you have access to.")


def _require_write(user: User, path: str) -> None:
    """Refuse (forbidden) a change at ``path``, which ``user`` may read, if they may not make it."""
    refusal = _write_refusal(user, path)
    if refusal is not None:
        raise Forbidden(refusal)


def require_write_into(user: User, folder: str) -> None:
    """Refuse a change inside ``folder`` (a normalized path): not found if ``user`` may not read it,
    forbidden if they may read it only."""
    if folder:
        _require(user, folder)
    _require_write(user, folder)


def _require_file_path(path: str) -> None:
    parts = path.split("/")
    minimum = {"apps": 4, "users": 3}.get(parts[0], 2)
    if len(parts) < minimum:
        raise BadPath(f"{path!r} is a folder of the platform, not a file you can write or delete.")


def _virtual_folders(user: User, path: str) -> list[Entry] | None:
    """The folders above the ones a user can reach, which exist only as a view."""
    if path == "":
        if user.is_superuser:
            return None
        return [Entry("apps", "apps", True), Entry("users", "users", True)]
    if path == "apps" and not user.is_superuser:
        return [Entry(app.name, f"apps/{app.name}", True) for app in apps_for_user(user).order_by("name")]
    if path == "users" and not user.is_superuser:
        return [Entry(user.username, user_folder(user), True)]
    parts = path.split("/")
    if len(parts) == 2 and parts[0] == "apps" and not user.is_superuser:
        app = App.objects.filter(name=parts[1]).first()
        if app is None or app_access_level(user, app) is None:
            raise NotFound(f"There is no folder {path!r} you have access to.")
        return [Entry("data", app_folder(app.name), True)]
    return None


def storage_list(*, user: User, path: str) -> list[Entry]:
    """The folders and files directly inside ``path``."""
    path = normalize_path(path)
    virtual = _virtual_folders(user, path)
    if virtual is not None:
        return virtual
    _require(user, path)
    try:
        folders, files = default_storage.listdir(path)
    except FileNotFoundError:
        folders, files = [], []
    entries = [Entry(name, posixpath.join(path, name), True) for name in sorted(folders)]
    for name in sorted(files):
        if name.startswith(TEMPORARY_PREFIX):
            continue
        full = posixpath.join(path, name)
        entries.append(Entry(name, full, False, default_storage.size(full), default_storage.get_modified_time(full)))
    return entries


def storage_open(*, user: User, path: str) -> tuple[File, int]:
    """Open a file to stream it; return the file and its size."""
    path = normalize_path(path)
    _require(user, path)
    try:
        handle = default_storage.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound(f"There is no file {path!r}.") from None
    except OSError as exc:
        if "does not exist" in str(exc).lower() or "not found" in str(exc).lower():
            raise NotFound(f"There is no file {path!r}.") from None
        raise
    return handle, handle.size


class LimitedReader(io.RawIOBase):
    """A read-only stream over a request body that refuses to go past ``limit`` bytes."""

    what = "file"  # what the body is, for the error message

    def __init__(self, source: IO[bytes], limit: int):
        self.source, self.limit, self.count = source, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.source.read(len(buffer))
        self.count += len(chunk)
        if self.count > self.limit:
            raise TooLarge(f"The {self.what} is over the limit of {self.limit} bytes.")
        self.inspect(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def inspect(self, chunk: bytes) -> None:
        """Refuse a chunk by raising, before any of it is stored; a subclass checks its format here."""


def storage_put(*, user: User, path: str, stream: IO[bytes], declared_length: int | None = None) -> Entry:
    """Store a stream at ``path`` (replacing a file there), reading it in chunks."""
    path = normalize_path(path)
    _require(user, path)
    _require_file_path(path)
    _require_write(user, path)
    limit = settings.PRO_MAX_UPLOAD_BYTES
    if declared_length is not None and declared_length > limit:
        raise TooLarge(f"The file is {declared_length} bytes, over the limit of {limit} bytes.")
    folder = posixpath.dirname(path)
    if default_storage.exists(path) and _is_folder(path):
        raise BadPath(f"{path!r} is a folder.")
    if folder and default_storage.exists(folder) and not _is_folder(folder):
        raise BadPath(f"{folder!r} is a file, not a folder.")
    reader = io.BufferedReader(LimitedReader(stream, limit), buffer_size=1024 * 1024)
    saved = default_storage.save(path, File(reader, name=posixpath.basename(path)))
    logger.info("%s stored %s", user.username, saved)
    return Entry(
        posixpath.basename(saved), saved, False, default_storage.size(saved), default_storage.get_modified_time(saved)
    )


def storage_make_folder(*, user: User, path: str) -> Entry:
    """Create an empty folder at ``path`` inside a folder ``user`` may write into."""
    path = normalize_path(path)
    _require(user, path)
    _require_file_path(path)  # a folder where a file could go: not one of the platform's own
    _require_write(user, path)
    parent = posixpath.dirname(path)
    if _is_folder(path):
        raise Conflict(f"There is a folder {path!r} already.")
    if default_storage.exists(path):
        raise BadPath(f"{path!r} is a file.")
    if parent and default_storage.exists(parent) and not _is_folder(parent):
        raise BadPath(f"{parent!r} is a file, not a folder.")
    try:
        os.makedirs(default_storage.path(path), exist_ok=True)
    except NotImplementedError:  # object storage: no path on disk
        default_storage.save(posixpath.join(path, FOLDER_MARKER), io.BytesIO(b""))
    logger.info("%s created the folder %s", user.username, path)
    return Entry(posixpath.basename(path), path, True)


def _is_folder(path: str) -> bool:
    try:
        folders, files = default_storage.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if folders or files:
        return True
    try:
        return os.path.isdir(default_storage.path(path))
    except NotImplementedError:  # object storage: a folder exists only through what it holds
        return False


def storage_delete(*, user: User, path: str) -> None:
    path = normalize_path(path)
    _require(user, path)
    _require_file_path(path)
    _require_write(user, path)
    if not default_storage.exists(path) or _is_folder(path):
        raise NotFound(f"There is no file {path!r}.")
    default_storage.delete(path)
    logger.info("%s deleted %s", user.username, path)

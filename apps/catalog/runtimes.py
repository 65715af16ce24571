"""Runtimes and the wheelhouse: what admins add, deprecate and delete (the writes of :mod:`.environments`' rows)."""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from apps.accounts.events import security_event
from pro_portal.errors import ApplicationError, Conflict, Forbidden, NotFound, TooLarge
from sessions.runtime import runtime_file, runtime_ref

from .environments import WHEELHOUSE, builtin_packages
from .models import Environment, Runtime

BUILTIN_NAME = "py311-highs"
BUILTIN_VERSION = "1.0"
BUILTIN_RUNTIME = f"{BUILTIN_NAME}@{BUILTIN_VERSION}"
WHEEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,200}\.(whl|tar\.gz|zip)$")


class RuntimeRefused(ApplicationError):
    """A runtime file is refused; its ``code`` says why (untrusted_runtime, tampered_runtime, ...)."""


def _admin_only(user: User) -> None:
    if not user.is_superuser:
        raise Forbidden("Only admins manage runtimes and the wheelhouse.")


def runtime_ensure_builtin() -> Runtime:
    """The runtime every node has: the platform's own interpreter, with the SDK and HiGHS."""
    packages = builtin_packages()
    runtime, _ = Runtime.objects.update_or_create(
        key=BUILTIN_RUNTIME,
        defaults={
            "name": BUILTIN_NAME,
            "version": BUILTIN_VERSION,
            "python": "{}.{}".format(*sys.version_info[:2]),
            "title": "Python 3.11 with HiGHS",
            "interpreter": sys.executable,
            "description": "The platform's own Python environment: the app SDK, highspy and numpy.",
            "is_builtin": True,
            "packages": packages,
            "lock": "\n".join(f"{name}=={version}" for name, version in packages.items()),
        },
    )
    return runtime


def runtime_resolve(text: str) -> Runtime:
    """The runtime a manifest asks for: exactly, or the newest of a family (deprecated ones are not chosen)."""
    try:
        ref = runtime_ref.parse_ref(text)
    except runtime_ref.RuntimeRefError as exc:
        raise ApplicationError(str(exc), code="unknown_runtime") from None
    family = [r for r in Runtime.objects.filter(name=ref.name) if ref.matches(r.version)]
    usable = [r for r in family if not r.is_deprecated]
    if usable:
        return max(usable, key=lambda r: runtime_ref.version_tuple(r.version))
    known = ", ".join(Runtime.objects.filter(deprecated_at__isnull=True).values_list("key", flat=True)) or "none"
    why = "is deprecated" if family else "is not on this platform"
    raise ApplicationError(f"Runtime {text!r} {why} (it has: {known}).", code="unknown_runtime")


def runtime_add(*, user: User, stream: IO[bytes], request: Any = None) -> Runtime:
    """Check a signed runtime file against this node's trusted keys and store it; nothing is kept if refused."""
    _admin_only(user)
    trusted = runtime_file.trusted_keys(settings.PRO_RUNTIME_TRUSTED_KEYS)
    with tempfile.TemporaryFile() as copy:
        digest = _Counting(copy)
        try:
            header = runtime_file.read_header(_Tee(stream, digest), trusted)
            runtime_file.check_payload(_Tee(stream, digest), header)
        except runtime_file.RuntimeFileError as exc:
            security_event("runtime.refused", request=request, actor=user, target=str(exc)[:200], outcome="denied")
            raise RuntimeRefused(str(exc), code=exc.code) from None
        if Runtime.objects.filter(key=header.key).exists():
            raise Conflict(f"Runtime {header.key} exists: give the new one another version.", code="duplicate_runtime")
        copy.seek(0)
        path = default_storage.save(f"runtimes/{header.key}-{digest.hexdigest()[:12]}.proruntime", File(copy))
    with transaction.atomic():
        runtime = Runtime.objects.create(
            key=header.key,
            name=header.name,
            version=header.version,
            python=header.python,
            title=f"Python {header.python}: {', '.join(sorted(header.packages)[:6]) or 'no packages'}",
            lock=header.lock,
            packages=header.packages,
            file_path=path,
            file_sha256=digest.hexdigest(),
            file_size=digest.size,
            signer=header.signer,
        )
    security_event("runtime.add", request=request, actor=user, target=f"runtime {runtime.key}", signer=header.signer)
    return runtime


class _Counting:
    """A sink that copies what passes, hashing and counting it."""

    def __init__(self, sink: IO[bytes]):
        self.sink, self.digest, self.size = sink, hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > settings.PRO_MAX_RUNTIME_BYTES:
            raise TooLarge(f"The runtime file is over the limit of {settings.PRO_MAX_RUNTIME_BYTES} bytes.")
        self.digest.update(chunk)
        self.sink.write(chunk)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


class _Tee:
    """A stream whose reads are also written to ``sink``."""

    def __init__(self, source: IO[bytes], sink: _Counting):
        self.source, self.sink = source, sink

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.sink.write(chunk)
        return chunk


def runtime_get(key: str) -> Runtime:
    runtime = Runtime.objects.filter(key=key).first()
    if runtime is None:
        raise NotFound(f"There is no runtime {key!r}.")
    return runtime


def runtime_deprecate(*, user: User, key: str, deprecated: bool = True, request: Any = None) -> Runtime:
    _admin_only(user)
    runtime = runtime_get(key)
    runtime.deprecated_at = timezone.now() if deprecated else None
    runtime.save(update_fields=["deprecated_at"])
    kind = "runtime.deprecate" if deprecated else "runtime.undeprecate"
    security_event(kind, request=request, actor=user, target=f"runtime {key}")
    return runtime


def runtime_delete(*, user: User, key: str, request: Any = None) -> None:
    """Delete a runtime no app version uses (409 otherwise), with its unused environments and files."""
    _admin_only(user)
    runtime = runtime_get(key)
    if runtime.is_builtin:
        raise Conflict("The built-in runtime cannot be deleted.", code="runtime_in_use")
    users = sorted({str(v) for v in runtime.app_versions.select_related("app")})
    if users:
        raise Conflict(
            f"Runtime {key} is used by {', '.join(users[:20])}: delete those versions first.", code="runtime_in_use"
        )
    paths = [runtime.file_path, *runtime.environments.values_list("archive_path", flat=True)]
    try:
        with transaction.atomic():
            runtime.environments.all().delete()
            runtime.delete()
    except ProtectedError:  # a version published meanwhile
        raise Conflict(f"Runtime {key} is in use.", code="runtime_in_use") from None
    for path in filter(None, paths):
        default_storage.delete(path)
    security_event("runtime.delete", request=request, actor=user, target=f"runtime {key}")


def environments_delete(*, user: User, keys: list[str], request: Any = None) -> int:
    """Delete environments no app version uses (409 otherwise), their archives once committed."""
    _admin_only(user)
    doomed = list(Environment.objects.filter(key__in=keys).values_list("pk", "key", "archive_path"))
    try:
        with transaction.atomic():
            Environment.objects.filter(pk__in=[pk for pk, _, _ in doomed]).delete()
    except ProtectedError:
        raise Conflict(
            "An app version uses this environment: delete the version first.", code="environment_in_use"
        ) from None
    paths = [path for _, _, path in doomed if path]

    def remove_archives() -> None:
        for path in paths:
            default_storage.delete(path)

    transaction.on_commit(remove_archives)
    for _, key, _ in doomed:
        security_event("environment.delete", request=request, actor=user, target=f"environment {key[:12]}")
    return len(doomed)


# ---------------------------------------------------------------- the wheelhouse


def wheelhouse_add(*, user: User, name: str, stream: IO[bytes], request: Any = None) -> str:
    """Store a wheel (or source archive) for builds on nodes without a package index."""
    _admin_only(user)
    if not WHEEL_NAME.match(name):
        raise ApplicationError(f"{name!r} is not a wheel or source archive file name.", code="invalid")
    with tempfile.TemporaryFile() as copy:
        size = 0
        while chunk := stream.read(runtime_file.CHUNK):
            size += len(chunk)
            if size > settings.PRO_MAX_WHEEL_BYTES:
                raise TooLarge(f"The file is over the limit of {settings.PRO_MAX_WHEEL_BYTES} bytes.")
            copy.write(chunk)
        copy.seek(0)
        path = f"{WHEELHOUSE}/{name}"
        default_storage.delete(path)
        default_storage.save(path, File(copy))
    security_event("wheelhouse.add", request=request, actor=user, target=name, size=size)
    return name


def wheelhouse_delete(*, user: User, name: str, request: Any = None) -> None:
    _admin_only(user)
    path = f"{WHEELHOUSE}/{name}"
    if not WHEEL_NAME.match(name) or not default_storage.exists(path):
        raise NotFound(f"The wheelhouse has no {name!r}.")
    default_storage.delete(path)
    security_event("wheelhouse.delete", request=request, actor=user, target=name)

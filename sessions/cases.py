"""Cases in storage: their bytes in the case format, their facts in the admin database."""

from __future__ import annotations

import io
import logging
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from apps.catalog.models import App, AppVersion
from apps.storage.services import LimitedReader
from pro_portal.errors import ApplicationError
from sessions.runtime.case import CaseData, CaseFormatError, read_case

from .case_check import CaseStreamCheck
from .models import Case, CaseKind

logger = logging.getLogger(__name__)
UPLOAD_CHUNK = 1024 * 1024


def case_store(
    *,
    owner: User,
    app: App,
    blob: bytes,
    kind: str = CaseKind.SAVED,
    name: str = "",
    app_version: AppVersion | None = None,
) -> Case:
    """Store case bytes and record the case; the bytes must be a readable case."""
    try:
        read_case(blob)
    except CaseFormatError as exc:
        raise ApplicationError(f"The case is not readable: {exc}", code="bad_case") from None
    case = Case(owner=owner, app=app, app_version=app_version, kind=kind, name=name, size=len(blob))
    case.storage_path = default_storage.save(f"cases/{app.name}/{case.id}.case", ContentFile(blob))
    try:
        case.save()
    except BaseException:
        default_storage.delete(case.storage_path)
        raise
    return case


class _CheckedCaseReader(LimitedReader):
    """A request body read as a case: refused past ``limit`` bytes or at its first bad byte."""

    what = "case"

    def __init__(self, source: IO[bytes], limit: int):
        super().__init__(source, limit)
        self.check = CaseStreamCheck()

    def inspect(self, chunk: bytes) -> None:
        try:
            self.check.feed(chunk)
        except CaseFormatError as exc:
            raise _bad_case(exc) from None


def _bad_case(exc: CaseFormatError) -> ApplicationError:
    return ApplicationError(f"The case is not readable: {exc}", code="bad_case")


def case_store_stream(
    *, owner: User, app: App, stream: IO[bytes], kind: str = CaseKind.SAVED, name: str = "", limit: int
) -> Case:
    """Store a case read from ``stream`` in chunks, checking its format on the way; hold none of it.

    At most ``limit`` bytes are read. The file in storage is removed again when the case is refused.
    """
    reader = _CheckedCaseReader(stream, limit)
    case = Case(owner=owner, app=app, kind=kind, name=name)
    content = File(io.BufferedReader(reader, buffer_size=UPLOAD_CHUNK), name=f"{case.id}.case")
    case.storage_path = default_storage.save(f"cases/{app.name}/{case.id}.case", content)
    try:
        try:
            reader.check.finish()
        except CaseFormatError as exc:
            raise _bad_case(exc) from None
        case.size = reader.count
        case.save()
    except BaseException:
        default_storage.delete(case.storage_path)
        raise
    logger.info("%s uploaded case %s of %s (%d bytes)", owner.username, case.id, app.name, case.size)
    return case


def case_open(case: Case) -> File:
    """The case file in storage, open for reading (the caller closes it)."""
    return default_storage.open(case.storage_path, "rb")


def case_read_bytes(case: Case) -> bytes:
    with case_open(case) as handle:
        return handle.read()


def case_load(case: Case) -> CaseData:
    return read_case(case_read_bytes(case))


def case_upload(*, user: User, app_name: str, stream: IO[bytes], name: str = "", kind: str = CaseKind.SAVED) -> Case:
    """Store a case a user sends for an app they may use, streamed from ``stream`` into storage.

    The app is checked before any of the body is read; at most ``PRO_MAX_CASE_BYTES`` are.
    """
    from apps.catalog.selectors import app_get_for_user

    if kind not in (CaseKind.SAVED, CaseKind.INPUT):
        raise ApplicationError("A case sent by a user is 'saved' or 'input'.", code="invalid")
    app = app_get_for_user(user, app_name)
    return case_store_stream(
        owner=user, app=app, stream=stream, kind=kind, name=name.strip()[:200], limit=settings.PRO_MAX_CASE_BYTES
    )


def case_delete(*, case: Case) -> None:
    """Delete a case; jobs that used it keep their own record of it being gone."""
    path = case.storage_path
    case.delete()
    case_delete_files([path])


def case_delete_files(paths: list[str]) -> None:
    def delete() -> None:
        for path in paths:
            if path:
                default_storage.delete(path)

    transaction.on_commit(delete)

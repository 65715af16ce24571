"""Cases in storage: their bytes in the case format, their facts in the admin database."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from apps.catalog.models import App, AppVersion
from pro_portal.errors import ApplicationError, NotFound
from sessions.runtime.case import CaseData, CaseFormatError, read_case

from .models import Case, CaseKind


def case_store(
    *,
    owner: AbstractUser,
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


def case_read_bytes(case: Case) -> bytes:
    with default_storage.open(case.storage_path, "rb") as handle:
        return handle.read()


def case_load(case: Case) -> CaseData:
    return read_case(case_read_bytes(case))


def case_get_for_user(user: AbstractUser, case_id) -> Case:
    """A case its owner (or an admin) may see."""
    cases = Case.objects.select_related("app")
    if not user.is_superuser:
        cases = cases.filter(owner=user)
    try:
        return cases.get(pk=case_id)
    except (Case.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound(f"There is no case {case_id} you have access to.") from None


def cases_for_user(user: AbstractUser, *, app_name: str | None = None, kind: str | None = None):
    """A user's own cases (an admin's: everyone's), newest first."""
    cases = Case.objects.select_related("app", "app_version", "owner")
    if not user.is_superuser:
        cases = cases.filter(owner=user)
    if app_name:
        cases = cases.filter(app__name=app_name)
    if kind:
        cases = cases.filter(kind=kind)
    return cases


def case_upload(*, user: AbstractUser, app_name: str, blob: bytes, name: str = "", kind: str = CaseKind.SAVED) -> Case:
    """Store a case a user sends for an app they may use."""
    from apps.catalog.selectors import app_get_for_user

    if kind not in (CaseKind.SAVED, CaseKind.INPUT):
        raise ApplicationError("A case sent by a user is 'saved' or 'input'.", code="invalid")
    app = app_get_for_user(user, app_name)
    return case_store(owner=user, app=app, blob=blob, kind=kind, name=name.strip()[:200])


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

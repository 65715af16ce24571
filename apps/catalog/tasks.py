"""django-q2 task functions: one-line calls into services."""

from .verification import version_verify


def verify_version(version_id: int) -> str | None:
    return version_verify(version_id=version_id)

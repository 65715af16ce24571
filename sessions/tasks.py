"""django-q2 task functions: one-line calls into services."""

from .jobs import jobs_remove_expired


def remove_expired_jobs() -> int:
    return jobs_remove_expired()

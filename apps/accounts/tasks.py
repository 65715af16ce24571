"""django-q2 task functions: one-line calls into services."""

from .events import security_events_remove_expired


def remove_expired_security_events() -> int:
    return security_events_remove_expired()

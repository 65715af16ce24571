from django.apps import AppConfig


class SessionsConfig(AppConfig):
    """Running apps: solve jobs and their cases (data sessions join them)."""

    name = "sessions"
    label = "pro_sessions"
    verbose_name = "Sessions and jobs"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers

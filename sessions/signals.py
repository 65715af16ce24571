from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from .data_sessions import sessions_stop_for_user


@receiver(user_logged_out)
def stop_sessions_on_logout(sender, request, user, **kwargs) -> None:
    """Logging out closes the user's data sessions."""
    if user is not None:
        sessions_stop_for_user(user=user, reason="Closed when the user logged out.")

from axes.signals import user_locked_out
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from .events import security_event
from .services import group_everyone


@receiver(post_save, sender=get_user_model())
def add_new_user_to_everyone(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """Every account belongs to the built-in group that sample apps are granted to."""
    if created and not raw:
        instance.groups.add(group_everyone())


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs) -> None:
    security_event("login", request=request, actor=user.username, target=f"user {user.username}")


@receiver(user_login_failed)
def record_login_failure(sender, credentials, request=None, **kwargs) -> None:
    username = credentials.get("username", "")
    security_event("login", request=request, actor=username, target=f"user {username}", outcome="failure")


@receiver(user_locked_out)
def record_lockout(sender, request, username=None, ip_address=None, **kwargs) -> None:
    security_event(
        "login.lockout",
        request=request,
        actor=username or "",
        target=f"user {username or '?'} / address {ip_address}",
        outcome="denied",
    )


@receiver(post_save, sender=LogEntry)
def record_admin_change(sender, instance: LogEntry, created: bool, **kwargs) -> None:
    """Changes made in the Django admin (users, groups, grants...) go to the log too."""
    if created:
        action = {1: "add", 2: "change", 3: "delete"}.get(instance.action_flag, "change")
        target = (
            f"{instance.content_type.app_label}.{instance.content_type.model} {instance.object_repr}"
            if instance.content_type
            else instance.object_repr
        )
        security_event(
            f"admin.{action}", actor=instance.user.username, target=target, message=instance.get_change_message()
        )

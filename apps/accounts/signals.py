from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from pro_portal.errors import access_denied

from .api_keys import api_keys_revoke_all
from .events import security_event
from .lockout import lock_holds, locks_of
from .models import GroupNetworks, SecurityOutcome
from .network import networks_forget
from .services import credentials_forget, group_everyone, ticket_revoke_all


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
    security_event("login", request=request, actor=username, target=f"user {username}", outcome=SecurityOutcome.FAILURE)


@receiver(access_denied)
def record_access_denied(sender, request, target: str, message: str, **kwargs) -> None:
    """The API refused a request as forbidden (sent by the one exception handler, pro_portal.errors)."""
    security_event("permission.denied", request=request, target=target, outcome=SecurityOutcome.DENIED, message=message)


@receiver(user_locked_out)
def record_lockout(sender, request, username=None, ip_address=None, **kwargs) -> None:
    """A failure that made a lock, or an attempt a lock refused: which rule, and what it counted."""
    lock = getattr(request, "pro_lock", None)
    detail = {}
    if lock is not None:
        detail = {"rule": lock.rule, "count": lock.count, "threshold": lock.threshold, "refused": lock.refused}
    security_event(
        "login.lockout",
        request=request,
        actor=username or "",
        target=lock.target if lock is not None else f"user {username or '?'} / address {ip_address}",
        outcome=SecurityOutcome.DENIED,
        **detail,
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


@receiver(user_logged_out)
def revoke_tickets_on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        ticket_revoke_all(user=user, reason="logout")


@receiver(pre_save, sender=get_user_model())
def revoke_credentials_on_password_change(sender, instance, raw: bool = False, **kwargs) -> None:
    """However the password changes (portal, admin, command), the tickets and API keys issued before it end."""
    update_fields = kwargs.get("update_fields")
    if raw or instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password and not _hash_upgrade(instance, old, update_fields):
        # In the saving transaction: if the new password is not stored, the tickets and keys stay too.
        security_event("password.change", actor=instance.username, target=f"user {instance.username}")
        ticket_revoke_all(user=instance, reason="password change")
        api_keys_revoke_all(user=instance, reason="password change")


def _hash_upgrade(instance, old: str, update_fields) -> bool:
    """Django re-hashing the same password at a login (a newer hasher or more iterations), not a change.

    Its ``check_password`` saves only the password, with the raw one forgotten, which
    ``set_password`` (every real change) remembers; an unusable new password is a change.
    """
    return (
        update_fields is not None
        and set(update_fields) == {"password"}
        and getattr(instance, "_password", None) is None
        and is_password_usable(old)
        and is_password_usable(instance.password)
    )


@receiver(pre_delete, sender=AccessAttempt)
def note_locks_ending(sender, instance: AccessAttempt, origin=None, **kwargs) -> None:
    """Before failed attempts are removed: the locks they are part of, each once per removal."""
    claimed = getattr(origin, "_pro_locks_claimed", None)
    if claimed is None:
        claimed = set()
        if origin is not None:
            origin._pro_locks_claimed = claimed
    locks = [lock for lock in locks_of(instance.username, instance.ip_address) if lock.key not in claimed]
    claimed.update(lock.key for lock in locks)
    instance._pro_locks = locks


@receiver(post_delete, sender=AccessAttempt)
def record_unlock(sender, instance: AccessAttempt, **kwargs) -> None:
    """A lockout ends when its failed attempts are removed: by an admin, a reset command or the cool-off."""
    for lock in getattr(instance, "_pro_locks", []):
        if not lock_holds(lock):
            security_event(
                "login.unlock", actor=lock.username or "", target=lock.target, rule=lock.rule, failures=lock.count
            )


@receiver(post_save, sender=get_user_model())
@receiver(post_delete, sender=get_user_model())
@receiver(post_save, sender=GroupNetworks)
@receiver(post_delete, sender=GroupNetworks)
@receiver(m2m_changed, sender=get_user_model().groups.through)
def forget_cached_access(sender, **kwargs) -> None:
    """A user (deactivated, deleted), a group's ranges or its members changed: this process's
    second-long caches of credentials and ranges start again (other processes: within a second)."""
    credentials_forget()
    networks_forget()

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import group_everyone


@receiver(post_save, sender=get_user_model())
def add_new_user_to_everyone(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """Every account belongs to the built-in group that sample apps are granted to."""
    if created and not raw:
        instance.groups.add(group_everyone())

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.utils import timezone

from .models import ApiKey, ApiTicket, GroupNetworks, Quota, SecurityEvent
from .services import credentials_forget
from .two_factor import two_factor_reset


class GroupNetworksInline(admin.StackedInline):
    """IP range filtering per group, edited with the group."""

    model = GroupNetworks
    can_delete = True
    extra = 0
    max_num = 1


class QuotaInline(admin.StackedInline):
    """A group's quota, edited with the group (a user's own in the quota list)."""

    model = Quota
    fk_name = "group"
    exclude = ["user"]
    can_delete = True
    extra = 0
    max_num = 1


class GroupWithNetworksAdmin(GroupAdmin):
    inlines = [*GroupAdmin.inlines, GroupNetworksInline, QuotaInline]


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """Every quota; a user's own is made here (a group's also on the group's page)."""

    list_display = [
        "__str__",
        "running_jobs",
        "queued_jobs",
        "sessions",
        "max_priority",
        "max_time_limit",
        "max_memory_mb",
    ]
    autocomplete_fields = ["user", "group"]


admin.site.unregister(Group)
admin.site.register(Group, GroupWithNetworksAdmin)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Admins see and revoke keys; only their owners create them (the key is shown to them once)."""

    list_display = ("name", "prefix", "user", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix", "name")
    readonly_fields = ("user", "name", "key_hash", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset) -> None:
        from .events import security_event

        for key in queryset.filter(revoked_at__isnull=True):
            ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
            credentials_forget()
            security_event("apikey.revoke", request=request, target=f"API key {key.prefix}… ({key.name}) of {key.user}")


@admin.register(ApiTicket)
class ApiTicketAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix")
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin):
    """Read-only: the log is append-only for everyone, admins included."""

    list_display = ("at", "kind", "actor", "source", "target", "outcome")
    list_filter = ("kind", "outcome")
    search_fields = ("actor", "target", "source")
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class UserWithTwoFactorAdmin(UserAdmin):
    actions = ["reset_two_factor"]

    @admin.action(description="Reset two-factor login (a lost phone): they set it up again")
    def reset_two_factor(self, request, queryset) -> None:
        for user in queryset:
            two_factor_reset(user=user, actor=request.user, request=request)
        self.message_user(request, f"Two-factor login reset for {queryset.count()} user(s).")


admin.site.unregister(User)
admin.site.register(User, UserWithTwoFactorAdmin)

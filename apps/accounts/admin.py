from django.contrib import admin

from .models import ApiTicket, SecurityEvent


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

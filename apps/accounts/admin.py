from django.contrib import admin

from .models import ApiTicket


@admin.register(ApiTicket)
class ApiTicketAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix")
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")

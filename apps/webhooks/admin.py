from django.contrib import admin

from .models import Delivery, OwnerSettings


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "event", "status", "attempts", "status_code", "created_at", "delivered_at")
    list_filter = ("status", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]


@admin.register(OwnerSettings)
class OwnerSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "email_job_end", "secret_rotated_at")
    exclude = ("secret_encrypted",)  # never shown, not even to admins
    readonly_fields = ("user", "secret_rotated_at")

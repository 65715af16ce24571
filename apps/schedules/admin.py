from django.contrib import admin

from .models import Schedule, ScheduleRun


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "name",
        "owner",
        "app",
        "procedure",
        "cron",
        "timezone",
        "interval_seconds",
        "paused",
        "next_run_at",
    )
    list_filter = ("paused", "overlap", "missed")
    raw_id_fields = ("owner", "app")


@admin.register(ScheduleRun)
class ScheduleRunAdmin(admin.ModelAdmin):
    list_display = ("schedule", "slot_at", "state", "job", "node", "created_at")
    list_filter = ("state",)
    raw_id_fields = ("schedule", "job")

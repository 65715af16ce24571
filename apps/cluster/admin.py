from django.contrib import admin

from .models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "state",
        "roles",
        "address",
        "version",
        "started_at",
        "last_heartbeat",
        "restarts",
        "last_restart_at",
    )
    list_filter = ("state",)

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.accounts.events import security_event
from pro_portal.errors import ApplicationError

from .models import App, AppGrant, AppVersion, Runtime
from .services import network_target_parse


class AppVersionInline(admin.TabularInline):
    model = AppVersion
    extra = 0
    fields = ("version", "runtime", "is_hidden", "published_by", "published_at", "package_size")
    readonly_fields = ("version", "runtime", "published_by", "published_at", "package_size")
    can_delete = False
    show_change_link = True


class AppGrantInline(admin.TabularInline):
    model = AppGrant
    extra = 0
    fields = ("user", "group", "level", "granted_by", "granted_at")
    readonly_fields = ("granted_by", "granted_at")


class AppAdminForm(forms.ModelForm):
    """The admin's form of an app: network targets are checked as the API checks them."""

    def clean_network_targets(self) -> list[str]:
        value = self.cleaned_data.get("network_targets") or []
        if not isinstance(value, list):
            raise ValidationError('A list of "host:port" strings, e.g. ["db.example.com:3306"].')
        try:
            return list(dict.fromkeys(network_target_parse(item) for item in value))
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    form = AppAdminForm
    list_display = ("name", "title", "category", "owner", "latest_version", "network_outbound", "updated_at")
    list_filter = ("category", "network_outbound")
    search_fields = ("name", "title")
    inlines = [AppVersionInline, AppGrantInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if {"network_outbound", "network_targets"} & set(form.changed_data):
            security_event(
                "app.network",
                request=request,
                target=f"app {obj.name}",
                outbound=obj.network_outbound,
                targets=obj.network_targets,
            )


@admin.register(AppVersion)
class AppVersionAdmin(admin.ModelAdmin):
    list_display = ("app", "version", "runtime", "is_hidden", "published_by", "published_at")
    list_filter = ("is_hidden", "runtime")
    search_fields = ("app__name", "version")
    readonly_fields = ("package_path", "package_size", "package_sha256", "manifest")


@admin.register(AppGrant)
class AppGrantAdmin(admin.ModelAdmin):
    list_display = ("app", "user", "group", "level", "granted_by", "granted_at")
    list_filter = ("level",)


@admin.register(Runtime)
class RuntimeAdmin(admin.ModelAdmin):
    list_display = ("key", "title", "interpreter", "is_builtin")

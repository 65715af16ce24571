from django.contrib import admin

from .models import App, AppGrant, AppVersion, Runtime


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


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ("name", "title", "category", "owner", "latest_version", "updated_at")
    list_filter = ("category",)
    search_fields = ("name", "title")
    inlines = [AppVersionInline, AppGrantInline]


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

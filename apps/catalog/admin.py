from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.accounts.events import security_event
from pro_portal.errors import ApplicationError

from . import runtimes
from .models import App, AppGrant, AppVersion, Environment, Runtime
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
    # The runtime and environment were resolved and built at publishing: changing them by hand
    # would run the app on packages it was not verified with.
    readonly_fields = (
        "runtime",
        "runtime_requested",
        "environment",
        "package_path",
        "package_size",
        "package_sha256",
        "manifest",
    )


@admin.register(AppGrant)
class AppGrantAdmin(admin.ModelAdmin):
    list_display = ("app", "user", "group", "level", "granted_by", "granted_at")
    list_filter = ("level",)


# ---------------------------------------------------------------- runtimes and environments


def _size(value: int) -> str:
    return filesizeformat(value) if value else "—"


def _links(objects, url_name: str) -> SafeString | str:
    """Links to the admin pages of ``objects``, one a line; a dash when there are none."""
    rows = [(reverse(f"admin:{url_name}", args=[o.pk]), str(o)) for o in objects]
    return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>', rows) if rows else "—"


def _package_table(packages: dict) -> SafeString | str:
    if not packages:
        return "—"
    rows = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", sorted(packages.items()))
    return format_html("<table><thead><tr><th>Package</th><th>Version</th></tr></thead><tbody>{}</tbody></table>", rows)


def _pre(text: str) -> SafeString | str:
    return format_html("<pre>{}</pre>", text) if text else "—"


class RuntimeUploadForm(forms.ModelForm):
    """The admin's add view of a runtime: a signed ``.proruntime`` file, checked and stored by the service.

    The service runs in ``clean`` so that a refusal (an untrusted signer, a tampered file, a
    duplicate) is shown on the form; ``request`` is set by :meth:`RuntimeAdmin.get_form`.
    """

    file = forms.FileField(
        label="Runtime file",
        help_text="A signed .proruntime file (pro runtime build). Its signer must be one of this platform's "
        "PRO_RUNTIME_TRUSTED_KEYS.",
    )
    request: HttpRequest | None = None

    class Meta:
        model = Runtime
        fields: list[str] = []

    def clean(self) -> dict:
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is None or self.request is None:
            return cleaned
        try:
            self.instance = runtimes.runtime_add(user=self.request.user, stream=upload, request=self.request)
        except ApplicationError as exc:
            raise ValidationError(exc.message, code=exc.code) from None
        return cleaned


class RuntimeDeprecated(admin.SimpleListFilter):
    title = "deprecated"
    parameter_name = "deprecated"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(deprecated_at__isnull=self.value() == "no")
        return queryset


@admin.register(Runtime)
class RuntimeAdmin(admin.ModelAdmin):
    """Runtimes are added from signed files, deprecated and deleted through the services; never edited by hand."""

    list_display = (
        "key",
        "python",
        "is_builtin",
        "deprecated",
        "app_versions_count",
        "environments_count",
        "file_size_display",
        "signer",
    )
    list_filter = ("is_builtin", RuntimeDeprecated, "python")
    search_fields = ("key", "name", "title", "signer")
    actions = ["deprecate", "undeprecate"]
    fieldsets = (
        (None, {"fields": ("key", "title", "description", "python", "is_builtin", "interpreter", "deprecated_at")}),
        ("Signed file", {"fields": ("file_path", "file_sha256", "file_size_display", "signer", "created_at")}),
        ("Used by", {"fields": ("used_by_versions", "used_by_environments")}),
        ("Packages", {"fields": ("package_table", "lock_text")}),
    )
    readonly_fields = (
        "key",
        "title",
        "description",
        "python",
        "is_builtin",
        "interpreter",
        "deprecated_at",
        "file_path",
        "file_sha256",
        "file_size_display",
        "signer",
        "created_at",
        "used_by_versions",
        "used_by_environments",
        "package_table",
        "lock_text",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Runtime]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                app_version_count=Count("app_versions", distinct=True),
                environment_count=Count("environments", distinct=True),
            )
        )

    # -------------------------------------------------------- columns and read-only fields

    @admin.display(boolean=True, description="deprecated", ordering="deprecated_at")
    def deprecated(self, obj: Runtime) -> bool:
        return obj.is_deprecated

    @admin.display(description="app versions", ordering="app_version_count")
    def app_versions_count(self, obj: Runtime) -> int:
        return obj.app_version_count  # type: ignore[attr-defined]

    @admin.display(description="environments", ordering="environment_count")
    def environments_count(self, obj: Runtime) -> int:
        return obj.environment_count  # type: ignore[attr-defined]

    @admin.display(description="file size", ordering="file_size")
    def file_size_display(self, obj: Runtime) -> str:
        return _size(obj.file_size)

    @admin.display(description="app versions")
    def used_by_versions(self, obj: Runtime) -> SafeString | str:
        return _links(
            obj.app_versions.select_related("app").order_by("app__name", "version"), "catalog_appversion_change"
        )

    @admin.display(description="environments")
    def used_by_environments(self, obj: Runtime) -> SafeString | str:
        return _links(obj.environments.select_related("runtime").order_by("-created_at"), "catalog_environment_change")

    @admin.display(description="packages")
    def package_table(self, obj: Runtime) -> SafeString | str:
        return _package_table(obj.packages)

    @admin.display(description="lock file")
    def lock_text(self, obj: Runtime) -> SafeString | str:
        return _pre(obj.lock)

    # -------------------------------------------------------- adding: the upload form

    def has_change_permission(self, request: HttpRequest, obj: Runtime | None = None) -> bool:
        return False  # the change view is read-only; deprecation is an action

    def has_delete_permission(self, request: HttpRequest, obj: Runtime | None = None) -> bool:
        if obj is not None and obj.is_builtin:
            return False
        return super().has_delete_permission(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Runtime | None = None):
        if obj is None:
            return ((None, {"fields": ("file",)}),)
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Runtime | None = None):
        return () if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Runtime | None = None, change: bool = False, **kwargs):
        if obj is None:
            return type("RuntimeUploadForm", (RuntimeUploadForm,), {"request": request})
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Runtime, form, change: bool) -> None:
        pass  # runtime_add stored it while the form was checked

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if object_id is None:
            extra_context = {**(extra_context or {}), "show_save_and_add_another": False}
        return super().changeform_view(request, object_id, form_url, extra_context)

    # -------------------------------------------------------- deprecating

    def _deprecate(self, request: HttpRequest, queryset: QuerySet[Runtime], deprecated: bool) -> None:
        done = []
        for runtime in queryset:
            try:
                runtimes.runtime_deprecate(user=request.user, key=runtime.key, deprecated=deprecated, request=request)
            except ApplicationError as exc:
                self.message_user(request, f"{runtime.key}: {exc.message}", messages.ERROR)
            else:
                done.append(runtime.key)
        if done:
            what = "deprecated: new publishes no longer choose them" if deprecated else "usable by new publishes again"
            self.message_user(request, f"{', '.join(done)}: {what}.", messages.SUCCESS)

    @admin.action(description="Deprecate the selected runtimes (their app versions still run)")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[Runtime]) -> None:
        self._deprecate(request, queryset, True)

    @admin.action(description="Undeprecate the selected runtimes")
    def undeprecate(self, request: HttpRequest, queryset: QuerySet[Runtime]) -> None:
        self._deprecate(request, queryset, False)

    # -------------------------------------------------------- deleting: through runtime_delete
    #
    # The confirmation page lists what goes with a runtime (its environments) and, before the
    # admin confirms, the app versions that keep it ("protected"). The confirmed deletion always
    # goes to the service, which decides; its refusal is an error message, never a 500.

    def get_deleted_objects(self, objs, request: HttpRequest):
        confirmed = bool(request.POST.get("post"))
        deleted: list = []
        protected: list[str] = []
        environments = 0
        for runtime in objs:
            url = reverse("admin:catalog_runtime_change", args=[runtime.pk])
            deleted.append(format_html('Runtime: <a href="{}">{}</a>', url, runtime.key))
            owned = [format_html("Environment: {}", env) for env in runtime.environments.select_related("runtime")]
            environments += len(owned)
            if owned:
                deleted.append(owned)
            if not confirmed:
                if runtime.is_builtin:
                    protected.append(f"{runtime.key}: the built-in runtime")
                versions = runtime.app_versions.select_related("app").order_by("app__name", "version")
                protected += [f"App version {version} (runtime {runtime.key})" for version in versions]
        counts = {Runtime._meta.verbose_name_plural: len(objs)}
        if environments:
            counts[Environment._meta.verbose_name_plural] = environments
        return deleted, counts, set(), protected

    def log_deletions(self, request: HttpRequest, queryset) -> None:
        pass  # logged by _delete once the service has deleted

    def _delete(self, request: HttpRequest, runtime: Runtime) -> str:
        """Delete through the service: an empty string, or why it was refused."""
        try:
            runtimes.runtime_delete(user=request.user, key=runtime.key, request=request)
        except ApplicationError as exc:
            return exc.message
        super().log_deletions(request, [runtime])
        return ""

    def delete_model(self, request: HttpRequest, obj: Runtime) -> None:
        request._runtime_refused = self._delete(request, obj)  # type: ignore[attr-defined]

    def _delete_each(self, request: HttpRequest, queryset: QuerySet[Runtime]) -> list[str]:
        """Delete each through the service, saying why one was refused; the keys of those deleted."""
        deleted = []
        for runtime in queryset:
            refused = self._delete(request, runtime)
            if refused:
                self.message_user(request, refused, messages.ERROR)
            else:
                deleted.append(runtime.key)
        return deleted

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Runtime]) -> None:
        self._delete_each(request, queryset)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id) -> HttpResponse:
        refused = getattr(request, "_runtime_refused", "")
        if refused:
            self.message_user(request, refused, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:catalog_runtime_change", args=[obj_id]))
        super().response_delete(request, obj_display, obj_id)  # its message; it would go to the index
        return HttpResponseRedirect(reverse("admin:catalog_runtime_changelist"))

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        if "delete_selected" in actions:  # same name: the confirmation page posts it back
            actions["delete_selected"] = (
                RuntimeAdmin.delete_runtimes,
                "delete_selected",
                "Delete the selected runtimes (unused ones, with their environments)",
            )
        return actions

    def delete_runtimes(self, request: HttpRequest, queryset: QuerySet[Runtime]) -> HttpResponse | None:
        if not request.POST.get("post"):
            return delete_selected(self, request, queryset)  # the confirmation page
        deleted = self._delete_each(request, queryset)
        if deleted:
            self.message_user(request, f"Deleted {', '.join(deleted)}.", messages.SUCCESS)
        return None


class EnvironmentInUse(admin.SimpleListFilter):
    title = "used"
    parameter_name = "used"

    def lookups(self, request, model_admin):
        return (("yes", "by an app version"), ("no", "by no app version"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(app_version_count__gt=0)
        if self.value() == "no":
            return queryset.filter(app_version_count=0)
        return queryset


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    """Read-only: environments are made by publishing and built by verification; unused ones may be deleted."""

    list_display = (
        "short_key",
        "runtime",
        "requirements_text",
        "state",
        "installed_size_display",
        "archive_size_display",
        "used_by_list",
        "built_at",
    )
    list_filter = ("state", EnvironmentInUse, "runtime")
    list_select_related = ("runtime",)
    search_fields = ("key", "runtime__key", "requirements")
    fieldsets = (
        (None, {"fields": ("key", "runtime", "requirements_text", "state", "used_by_versions")}),
        ("Build", {"fields": ("created_at", "build_started_at", "built_at", "build_log_text")}),
        (
            "Archive",
            {"fields": ("archive_path", "archive_sha256", "archive_size_display", "installed_size_display")},
        ),
        ("Packages", {"fields": ("package_table",)}),
    )
    readonly_fields = (
        "key",
        "runtime",
        "requirements_text",
        "state",
        "used_by_versions",
        "created_at",
        "build_started_at",
        "built_at",
        "build_log_text",
        "archive_path",
        "archive_sha256",
        "archive_size_display",
        "installed_size_display",
        "package_table",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Environment]:
        return (
            super()
            .get_queryset(request)
            .annotate(app_version_count=Count("app_versions"))
            .prefetch_related("app_versions__app")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Environment | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Environment | None = None) -> bool:
        if obj is not None and obj.app_versions.exists():
            return False  # app versions run on it (bulk deletes are refused by the PROTECT relation)
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Environment) -> None:
        self.delete_queryset(request, Environment.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Environment]) -> None:
        try:
            runtimes.environments_delete(
                user=request.user, keys=list(queryset.values_list("key", flat=True)), request=request
            )
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id) -> HttpResponse:
        super().response_delete(request, obj_display, obj_id)  # its message; it would go to the index
        return HttpResponseRedirect(reverse("admin:catalog_environment_changelist"))

    @admin.display(description="key", ordering="key")
    def short_key(self, obj: Environment) -> str:
        return obj.key[:12]

    @admin.display(description="requirements")
    def requirements_text(self, obj: Environment) -> str:
        return ", ".join(obj.requirements) or "—"

    @admin.display(description="installed", ordering="installed_size")
    def installed_size_display(self, obj: Environment) -> str:
        return _size(obj.installed_size)

    @admin.display(description="archive", ordering="archive_size")
    def archive_size_display(self, obj: Environment) -> str:
        return _size(obj.archive_size)

    @admin.display(description="app versions", ordering="app_version_count")
    def used_by_list(self, obj: Environment) -> str:
        names = sorted(str(version) for version in obj.app_versions.all())
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return (", ".join(names[:5]) + more) or "—"

    @admin.display(description="app versions")
    def used_by_versions(self, obj: Environment) -> SafeString | str:
        return _links(
            obj.app_versions.select_related("app").order_by("app__name", "version"), "catalog_appversion_change"
        )

    @admin.display(description="build log")
    def build_log_text(self, obj: Environment) -> SafeString | str:
        return _pre(obj.build_log)

    @admin.display(description="installed packages")
    def package_table(self, obj: Environment) -> SafeString | str:
        return _package_table(obj.packages)

from collections.abc import Mapping

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pro_portal.output import OutputSerializer
from pro_portal.strict import StrictSerializer

from .models import AccessLevel, App, AppGrant, AppVersion, Environment, Runtime


class RuntimeOut(OutputSerializer):
    deprecated = serializers.BooleanField(source="is_deprecated")
    app_versions = serializers.IntegerField(source="app_version_count", default=0)

    class Meta:
        model = Runtime
        fields = [
            "key",
            "name",
            "version",
            "python",
            "title",
            "description",
            "is_builtin",
            "deprecated",
            "deprecated_at",
            "packages",
            "signer",
            "file_size",
            "created_at",
            "app_versions",
        ]


class EnvironmentOut(OutputSerializer):
    runtime = serializers.CharField(source="runtime.key")
    app_versions = serializers.SerializerMethodField()

    class Meta:
        model = Environment
        fields = [
            "key",
            "runtime",
            "requirements",
            "state",
            "packages",
            "archive_size",
            "installed_size",
            "created_at",
            "built_at",
            "app_versions",
        ]

    def get_app_versions(self, environment: Environment) -> list[str]:
        return [f"{v.app.name} {v.version}" for v in environment.app_versions.all()]


class EnvironmentDetailOut(EnvironmentOut):
    class Meta(EnvironmentOut.Meta):
        fields = [*EnvironmentOut.Meta.fields, "build_log"]


class RuntimeDetailOut(RuntimeOut):
    environments = EnvironmentOut(many=True)
    used_by = serializers.SerializerMethodField()

    class Meta(RuntimeOut.Meta):
        fields = [*RuntimeOut.Meta.fields, "lock", "file_sha256", "environments", "used_by"]

    def get_used_by(self, runtime: Runtime) -> list[str]:
        return [f"{v.app.name} {v.version}" for v in runtime.app_versions.all()]


class RuntimeForm(StrictSerializer):
    file = serializers.FileField(help_text="The signed runtime file (.proruntime).")


class RuntimePatch(StrictSerializer):
    deprecated = serializers.BooleanField(help_text="Deprecated runtimes are not chosen for new publishes.")


class WheelOut(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField()


class VersionEnvironmentOut(OutputSerializer):
    class Meta:
        model = Environment
        fields = ["key", "requirements", "state", "packages", "installed_size", "built_at"]


class VersionOut(OutputSerializer):
    runtime = serializers.CharField(source="runtime.key")
    environment = VersionEnvironmentOut(allow_null=True)
    published_by = serializers.CharField(source="published_by.username", default=None, allow_null=True)
    is_latest = serializers.BooleanField()
    launch_url = serializers.SerializerMethodField()
    pages = serializers.SerializerMethodField()
    procedures = serializers.SerializerMethodField()

    class Meta:
        model = AppVersion
        fields = [
            "version",
            "runtime",
            "runtime_requested",
            "environment",
            "is_latest",
            "is_hidden",
            "published_by",
            "published_at",
            "package_size",
            "package_sha256",
            "verification_state",
            "verification_error",
            "launch_url",
            "pages",
            "procedures",
        ]

    def get_launch_url(self, version: AppVersion) -> str:
        return reverse("portal:launch", args=[version.app.name, version.version])

    def get_pages(self, version: AppVersion) -> list[str]:
        return [page.get("title", "") for page in _interface_part(version, "pages")]

    def get_procedures(self, version: AppVersion) -> list[dict]:
        return _interface_part(version, "procedures")


def _interface_part(version: AppVersion, part: str) -> list:
    """``pages`` or ``procedures`` of the version's interface: read alone by the app lists
    (``listed_<part>``, see apps.catalog.selectors), else from the whole manifest."""
    listed = f"listed_{part}"
    if hasattr(version, listed):
        return getattr(version, listed) or []
    return version.manifest.get("interface", {}).get(part, [])


class NetworkOut(StrictSerializer):  # also the body of AppPatch's network, so strict
    outbound = serializers.BooleanField(help_text="Other hosts through an HTTP proxy (never the node's own).")
    targets = serializers.ListField(child=serializers.CharField(), help_text='"host:port" services it may reach.')


class AppOut(OutputSerializer):
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    latest_version = serializers.CharField(source="latest_version.version", default=None, allow_null=True)
    icon_url = serializers.SerializerMethodField()
    access = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()
    network = serializers.SerializerMethodField()

    class Meta:
        model = App
        fields = [
            "name",
            "title",
            "description",
            "category",
            "owner",
            "latest_version",
            "icon_url",
            "access",
            "versions",
            "network",
        ]

    def get_icon_url(self, app: App) -> str | None:
        return reverse("api:app-icon", args=[app.name]) if app.icon_path else None

    def get_access(self, app: App) -> str:
        return self.context["access"](app)

    def get_versions(self, app: App) -> list[dict]:
        # One VersionOut for every app of a list (its fields are built once, not once per app).
        child = self.context.get("version_out")
        if child is None:
            child = self.context["version_out"] = VersionOut(context=self.context)
        return [child.to_representation(version) for version in self.context["versions"](app)]

    @extend_schema_field(NetworkOut)
    def get_network(self, app: App) -> dict:
        return {"outbound": app.network_outbound, "targets": list(app.network_targets or [])}


class PublishOut(AppOut):
    published_version = serializers.CharField(help_text="The version this package published (verified afterwards).")

    class Meta(AppOut.Meta):
        fields = [*AppOut.Meta.fields, "published_version"]


class AppPatch(StrictSerializer):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    category = serializers.CharField(max_length=64, required=False)
    network = NetworkOut(required=False, help_text="Admins only: what the app's sandboxes may reach.")


class VersionPatch(StrictSerializer):
    hidden = serializers.BooleanField(required=False)
    latest = serializers.BooleanField(required=False, help_text="true moves the latest tag to this version.")

    def validate_latest(self, value: bool) -> bool:
        if value is False:
            raise serializers.ValidationError("The latest tag moves by setting it on another version.")
        return value


class PublishForm(StrictSerializer):
    package = serializers.FileField(help_text="An encrypted package built with 'pro app pack'.")
    make_latest = serializers.BooleanField(default=True)


def publish_make_latest(query: Mapping[str, str], form: Mapping[str, str]) -> bool:
    """A publish's ``make_latest``, from the query or else the form: anything but ``false`` is true."""
    return query.get("make_latest", form.get("make_latest", "true")).lower() != "false"


class GrantOut(OutputSerializer):
    username = serializers.CharField(source="user.username", default=None, allow_null=True)
    group = serializers.CharField(source="group.name", default=None, allow_null=True)
    granted_by = serializers.CharField(source="granted_by.username", default=None, allow_null=True)

    class Meta:
        model = AppGrant
        fields = ["id", "username", "group", "level", "granted_by", "granted_at"]


class GrantIn(StrictSerializer):
    username = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)
    group = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)
    level = serializers.ChoiceField(choices=AccessLevel.values, default=AccessLevel.VIEWER)


class PublisherKeyOut(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key = serializers.CharField()

"""The connections API's bodies and answers: a secret goes in, never out."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pro_portal.output import OutputSerializer
from pro_portal.strict import StrictSerializer

from .models import Connection

URL_HELP = (
    "mysql://user:password@host:3306/database, postgresql://…, any SQLAlchemy URL (dialect+driver://…), or a web "
    "service's base URL (https://…). A password in it is taken out and kept sealed."
)
SECRET_HELP = "A database's password or a web service's bearer token; kept sealed, never shown again. Empty clears it."  # noqa: S105 - help text
HEADERS_HELP = "A web service's extra headers (an API key header, say); kept sealed, never shown."


class ConnectionFields(StrictSerializer):
    url = serializers.CharField(max_length=2000, help_text=URL_HELP)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    secret = serializers.CharField(
        max_length=4096, required=False, allow_blank=True, trim_whitespace=False, help_text=SECRET_HELP
    )
    headers = serializers.DictField(
        child=serializers.CharField(max_length=4096, allow_blank=True), required=False, help_text=HEADERS_HELP
    )


class ConnectionIn(ConnectionFields):
    name = serializers.SlugField(max_length=64, help_text="What app code asks for: pro_sdk.connection(name).")


class ConnectionPatch(ConnectionFields):
    url = serializers.CharField(max_length=2000, required=False, help_text=URL_HELP)


class ConnectionOut(OutputSerializer):
    has_secret = serializers.SerializerMethodField()
    apps = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = ["name", "title", "description", "kind", "url", "host", "port", "has_secret", "apps"]
        fields += ["created_at", "updated_at"]

    def get_has_secret(self, connection: Connection) -> bool:
        return bool(connection.secret_sealed)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_apps(self, connection: Connection) -> list[str]:
        return sorted(grant.app.name for grant in connection.grants.all())

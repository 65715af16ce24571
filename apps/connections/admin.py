"""The Django admin's connections: the secret and headers are written, never shown."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages

from pro_portal.errors import ApplicationError

from . import services
from .models import Connection, ConnectionGrant


class ConnectionForm(forms.ModelForm):
    url = forms.CharField(max_length=2000, help_text="mysql://user:password@host:3306/db, postgresql://…, https://…")
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="A database's password or a service's token. Left empty: unchanged (a password in the URL counts).",
    )
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Extra headers as JSON, e.g. {"X-Key": "…"}.',
    )
    clear_secrets = forms.BooleanField(required=False, help_text="Forget the stored secret and headers.")

    class Meta:
        model = Connection
        fields = ["name", "title", "description", "url"]

    def clean_headers(self) -> dict | None:
        text = self.cleaned_data.get("headers", "").strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None
        try:
            return services._headers_checked(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_url(self) -> str:
        try:
            services.connection_url_parse(self.cleaned_data["url"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None
        return self.cleaned_data["url"]


class GrantInline(admin.TabularInline):
    model = ConnectionGrant
    extra = 1
    raw_id_fields = ("app",)
    readonly_fields = ("granted_by", "granted_at")


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("name", "kind", "url", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "title", "url")
    inlines = [GrantInline]

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        return ("name", "kind", "host", "port") if obj else ()

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        secret = "" if data.get("clear_secrets") else (data.get("secret") or None)
        headers = {} if data.get("clear_secrets") else data.get("headers")
        fields = {"url": data["url"], "title": data.get("title", ""), "description": data.get("description", "")}
        try:
            if change:
                fresh = Connection.objects.get(pk=obj.pk)
                services.connection_update(
                    user=request.user,
                    connection=fresh,
                    changes={**fields, "secret": secret, "headers": headers},
                    request=request,
                )
            else:
                made = services.connection_create(
                    user=request.user, name=data["name"], secret=secret, headers=headers, request=request, **fields
                )
                obj.pk = made.pk
        except ApplicationError as exc:
            messages.error(request, exc.message)

    def save_formset(self, request, form, formset, change) -> None:
        grants = formset.save(commit=False)
        for grant in grants:
            services.connection_grant(user=request.user, connection=form.instance, app=grant.app, request=request)
        for grant in formset.deleted_objects:
            services.connection_revoke(user=request.user, connection=form.instance, app=grant.app, request=request)

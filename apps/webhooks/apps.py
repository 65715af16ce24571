from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "pro_webhooks"
    verbose_name = "Webhooks and notifications"

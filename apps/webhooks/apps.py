from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "pro_webhooks"
    verbose_name = "Webhooks and notifications"

    def ready(self) -> None:
        from apps.accounts.views import ACCOUNT_CARDS

        from .views import CARD

        if CARD not in ACCOUNT_CARDS:
            ACCOUNT_CARDS.append(CARD)

"""The ASGI entry point: HTTP to Django, websockets through origin check and login to consumers."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pro_portal.settings")

from .handler import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.accounts.middleware import WebsocketClientAddressMiddleware, WebsocketOriginValidator  # noqa: E402

from .body_limits import BodyLimitMiddleware  # noqa: E402
from .health import HealthCheck  # noqa: E402
from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Body limits are enforced here: Django reads a whole body before its middleware runs.
        "http": HealthCheck(BodyLimitMiddleware(django_asgi_app)),
        "websocket": WebsocketClientAddressMiddleware(
            WebsocketOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

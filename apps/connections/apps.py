from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "pro_connections"
    verbose_name = "Connections to databases and web services"

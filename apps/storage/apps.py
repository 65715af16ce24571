from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "apps.storage"
    label = "pro_storage"
    verbose_name = "Storage"

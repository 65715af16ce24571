from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "apps.schedules"
    label = "pro_schedules"
    verbose_name = "Schedules"

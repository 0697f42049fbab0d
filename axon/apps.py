from django.apps import AppConfig


class AxonConfig(AppConfig):
    name = "axon"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axon import checks  # noqa: F401  (registers the system checks)

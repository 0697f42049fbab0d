from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TelemetryConfig(AppConfig):
    name = "telemetry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(schedules_sync, sender=self)


def schedules_sync(**kwargs) -> None:
    """Telemetry's own jobs."""
    from voltaxe.schedules import schedules_keep

    schedules_keep({
        # Hourly even with retention off: on PostgreSQL it also creates the coming days' partitions.
        "telemetry: retention": ("telemetry.tasks.retention_task", 60),
        "telemetry: late hosts": ("telemetry.tasks.hosts_watch_task", 1),
    })

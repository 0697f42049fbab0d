from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import logins  # noqa: F401  (connects the log-in receivers)
        from audit.notifications.services import failing_warnings, health
        from voltaxe import nav
        from voltaxe.views import health_probes

        health_probes["notifications"] = health
        nav.warnings.append(failing_warnings)
        post_migrate.connect(schedules_sync, sender=self)


def schedules_sync(**kwargs) -> None:
    """Retries and storm control's digests run every minute on the queue."""
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Schedule

    func = "audit.tasks.notify_tick_task"
    Schedule.objects.update_or_create(
        name="audit: notifications", defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        create_defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1,
                         "next_run": timezone.now() + timedelta(minutes=1)})

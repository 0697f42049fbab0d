from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AxonConfig(AppConfig):
    name = "axon"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axon import (
            checks,  # noqa: F401  (registers the system checks)
            notifications,
        )
        from axon.hosts import HostAlertsPanel, open_alerts_by_host
        from axon.pages import alerts_of_hour
        from axon.scoring import model_cache, observations_score
        from axon.selectors import approval_key
        from axon.views import ModelPanel
        from telemetry import hosts, hosts_views, scoring, views
        from voltaxe import nav
        from voltaxe.views import health_probes

        # The apps below know nothing of the model: it plugs into their seams.
        scoring.register(observations_score, alert_key=approval_key)
        scoring.stored_listeners.append(notifications.records_stored)  # new alerts reach people (issue 22)
        views.panels.append(ModelPanel())
        hosts.register_alert_counter(open_alerts_by_host)
        hosts_views.host_panels.append(HostAlertsPanel())
        health_probes["active_model"] = lambda: model_cache.get()[0]
        nav.links.append(("Alerts", "alerts"))
        views.hour_link = alerts_of_hour

        post_migrate.connect(schedules_sync, sender=self)


def schedules_sync(**kwargs) -> None:
    """The model's schedules (RETRAIN_SCHEDULE_MINUTES=0 switches retraining off)."""
    from django.conf import settings

    from voltaxe.schedules import schedules_keep

    schedules_keep({
        "axon: scheduled retrain": ("axon.tasks.scheduled_retrain_task", settings.RETRAIN_SCHEDULE_MINUTES),
        "axon: maintenance": ("axon.tasks.maintenance_task", 1),
    })

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class VoltaxeConfig(AppConfig):
    name = "voltaxe"

    def ready(self) -> None:
        # After django.contrib.admin's autodiscover (earlier in INSTALLED_APPS): every ModelAdmin is registered.
        from voltaxe.admin_base import changelists_guard

        changelists_guard()
        # Django sends post_migrate only for apps with models, and this one has none: listen for the
        # queue's own (its tables are there by then).
        post_migrate.connect(schedules_sync, dispatch_uid="voltaxe.schedules")


def schedules_sync(app_config=None, **kwargs) -> None:
    from voltaxe.schedules import schedules_keep

    if app_config is not None and app_config.label != "django_q":
        return

    schedules_keep({"auth: expired tokens": ("voltaxe.tasks.tokens_flush_task", 24 * 60)})

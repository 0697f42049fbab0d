from django.apps import AppConfig


class VoltaxeConfig(AppConfig):
    name = "voltaxe"

    def ready(self) -> None:
        # After django.contrib.admin's autodiscover (earlier in INSTALLED_APPS): every ModelAdmin is registered.
        from voltaxe.admin_base import changelists_guard

        changelists_guard()

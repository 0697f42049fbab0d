"""The roles brought up to date: security admins may overrule an analyst's triage (axon 0009)."""
from django.db import migrations


def roles_sync(apps, schema_editor):
    from voltaxe.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("voltaxe", "0001_roles"), ("axon", "0009_alert_overrule_and_reopen")]
    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]

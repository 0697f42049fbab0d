"""The roles (voltaxe.roles), created or brought up to date; axon 0002 and 0005 did this before."""
from django.db import migrations


def roles_sync(apps, schema_editor):
    from voltaxe.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    # The permissions it grants exist once these have run.
    dependencies = [
        ("axon", "0005_triage_roles"),
        ("telemetry", "0006_partition_process_records"),
        ("audit", "0002_event_count"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]

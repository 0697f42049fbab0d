"""On PostgreSQL, the process-record table becomes partitioned by day (telemetry/partitions.py); SQLite is unchanged.

Existing rows are copied into the partitioned table inside this migration. Reversing it
keeps the partitioned table, which older code reads and writes the same way.
"""
from django.conf import settings
from django.db import migrations


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from django.utils import timezone

    from telemetry.partitions import partition_existing_table

    partition_existing_table(schema_editor, now=timezone.now(), retention_days=settings.RETENTION_DAYS)


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0005_bind_existing_keys")]
    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]

"""One fact, one field: `scored` was "has a model number"; `model_version` was an integer here and a
foreign key in axon, so the integers are now `model_number`.

On PostgreSQL the process records are partitioned (0006): a RENAME COLUMN on the parent table
renames it in every partition.
"""
from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0006_partition_process_records")]

    operations = [
        migrations.RemoveIndex(model_name="snapshot", name="snapshot_unscored"),
        migrations.RemoveField(model_name="snapshot", name="scored"),
        migrations.RenameField(model_name="snapshot", old_name="model_version", new_name="model_number"),
        migrations.RenameField(model_name="processrecord", old_name="model_version", new_name="model_number"),
        migrations.AlterField(
            model_name="processrecord", name="model_number",
            field=models.PositiveIntegerField(blank=True, help_text="The number of the model version that scored it.", null=True),
        ),
        migrations.AddIndex(
            model_name="snapshot",
            index=models.Index(condition=Q(model_number__isnull=True), fields=["timestamp"], name="snapshot_unscored"),
        ),
    ]

"""One fact, one field: a version's status followed from is_active (and, for "held", from the gate's
reason and never having been active); it is computed now. is_active is made to agree first."""
from django.db import migrations


def active_from_status(apps, schema_editor):
    ModelVersion = apps.get_model("axon", "ModelVersion")
    ModelVersion.objects.exclude(status="active").filter(is_active=True).update(is_active=False)
    ModelVersion.objects.filter(status="active").update(is_active=True)


def status_from_active(apps, schema_editor):
    ModelVersion = apps.get_model("axon", "ModelVersion")
    ModelVersion.objects.update(status="retired")
    ModelVersion.objects.filter(is_active=True).update(status="active")
    ModelVersion.objects.filter(is_active=False, activated_at__isnull=True).exclude(gate_reason="").update(status="held")


class Migration(migrations.Migration):
    dependencies = [("axon", "0006_run_stage_choices")]

    operations = [
        migrations.RunPython(active_from_status, status_from_active),
        migrations.RemoveField(model_name="modelversion", name="status"),
    ]

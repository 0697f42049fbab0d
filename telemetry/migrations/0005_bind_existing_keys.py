"""Existing keys keep today's fleets working, and no longer let one key write for another's hosts.

Each host becomes bound to the key it last reported with (Endpoint.last_agent): that is the key
its agent holds today. Existing keys keep the "enroll" scope (the new field's default), so a host
of today's fleet that has not reported yet is bound to the first key that reports for it, as
before the upgrade any key could; from then on only that key may report for it. Making every
existing key a relay would keep the fleets working too, but would leave every host open to every
key, which is the hole this change closes. Admins tighten keys to "its hosts only" in the admin.
"""
from django.db import migrations


def bind_last_reporters(apps, schema_editor):
    Endpoint = apps.get_model("telemetry", "Endpoint")
    AgentHost = apps.get_model("telemetry", "AgentHost")
    rows = Endpoint.objects.filter(last_agent__isnull=False).values_list("hostname", "last_agent_id").iterator(chunk_size=2000)
    batch = []
    for hostname, key_id in rows:
        batch.append(AgentHost(hostname=hostname, key_id=key_id))
        if len(batch) == 2000:
            AgentHost.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    AgentHost.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0004_agent_identity")]

    operations = [migrations.RunPython(bind_last_reporters, migrations.RunPython.noop)]

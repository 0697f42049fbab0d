"""Granted the triage and revoke permissions; now voltaxe's migration 0001_roles does. A no-op kept
for the migration graph (existing databases have applied it)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("axon", "0004_approvals_by_key_and_triage")]
    operations: list = []

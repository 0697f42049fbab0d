"""Analysts and security admins triage alerts; security admins revoke approvals."""
import importlib

from django.db import migrations

roles = importlib.import_module("axon.migrations.0002_roles")


class Migration(migrations.Migration):
    dependencies = [("axon", "0004_approvals_by_key_and_triage")]
    operations = [migrations.RunPython(roles.create_roles, migrations.RunPython.noop)]

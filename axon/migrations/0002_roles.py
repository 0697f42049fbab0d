"""Created the roles; now voltaxe's migration 0001_roles does (for every app). A no-op kept for the
migration graph: existing databases have applied it, and 0003 depends on it."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("axon", "0001_initial"),
        ("telemetry", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations: list = []

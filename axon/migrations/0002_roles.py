"""The two roles of the contract, with the permissions each implies."""
from django.db import migrations

ANALYST = [
    ("telemetry", "view_endpoint"), ("telemetry", "view_snapshot"), ("telemetry", "view_processrecord"),
    ("axon", "view_trainingrun"), ("axon", "view_modelversion"), ("axon", "view_approval"),
    ("axon", "triage_alert"),  # from 0005
]
SECURITY_ADMIN = ANALYST + [
    ("axon", "trigger_retrain"), ("axon", "activate_modelversion"), ("audit", "view_auditevent"),
    ("telemetry", "view_agentkey"), ("telemetry", "add_agentkey"), ("telemetry", "change_agentkey"),
    ("axon", "delete_approval"),  # revoke an approval; from 0005
]


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the roles need them now.
    for label in ("telemetry", "axon", "audit"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in (("Analyst", ANALYST), ("Security Admin", SECURITY_ADMIN)):
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in perms:
            # A permission of a model a later migration creates is granted by that migration (it runs this again).
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                group.permissions.add(permission)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Analyst", "Security Admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("axon", "0001_initial"),
        ("telemetry", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]

"""Security admins manage notification channels: the role gets audit's new permissions (voltaxe.roles).

Only audit's own permissions are granted here, so this migration needs no other app's; voltaxe's
roles migrations grant the rest.
"""
from django.db import migrations


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from voltaxe.roles import SECURITY_ADMIN

    config = apps.get_app_config("audit")
    models_module = getattr(config, "models_module", None)
    config.models_module = True  # a migration's stub has none; create_permissions skips such an app
    create_permissions(config, verbosity=0, apps=apps)
    config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Security Admin")
    for app_label, codename in SECURITY_ADMIN:
        if app_label == "audit":
            group.permissions.add(Permission.objects.get(content_type__app_label="audit", codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_notification_channels"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]

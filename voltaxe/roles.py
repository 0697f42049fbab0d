"""The two roles of the contract, with the permissions each implies: the project's, across its apps."""
from __future__ import annotations

ANALYST = [
    ("telemetry", "view_endpoint"), ("telemetry", "view_snapshot"), ("telemetry", "view_processrecord"),
    ("axon", "view_trainingrun"), ("axon", "view_modelversion"), ("axon", "view_approval"), ("axon", "triage_alert"),
]
SECURITY_ADMIN = ANALYST + [
    ("axon", "trigger_retrain"), ("axon", "activate_modelversion"), ("audit", "view_auditevent"),
    ("telemetry", "view_agentkey"), ("telemetry", "add_agentkey"), ("telemetry", "change_agentkey"),
    ("axon", "delete_approval"),  # revoke an approval
    ("axon", "overrule_alert"),  # clear "malicious", close a high-risk alert
    # notification channels (issue 22)
    ("audit", "view_channel"), ("audit", "add_channel"), ("audit", "change_channel"), ("audit", "delete_channel"),
    ("audit", "view_delivery"),
]
ROLES = {"Analyst": ANALYST, "Security Admin": SECURITY_ADMIN}


def roles_sync(apps) -> None:
    """Create the roles, or add what they lack; idempotent. `apps`: a migration's or django.apps.apps."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the roles need them now.
    for label in ("telemetry", "axon", "audit"):
        config = apps.get_app_config(label)
        models_module = getattr(config, "models_module", None)  # a migration's stub has none
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in perms:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))

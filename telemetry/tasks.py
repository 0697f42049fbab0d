from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from telemetry.services import telemetry_prune


def retention_task() -> str:
    if not settings.RETENTION_DAYS:
        return "retention is off"
    removed = telemetry_prune(older_than=timezone.now() - timedelta(days=settings.RETENTION_DAYS))
    return f"deleted {removed} snapshot(s) older than {settings.RETENTION_DAYS} days"

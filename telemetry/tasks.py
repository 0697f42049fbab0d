from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from telemetry.partitions import partitions_ahead
from telemetry.retention import telemetry_prune


def retention_task() -> str:
    """Hourly: the next days' partitions (PostgreSQL), then telemetry past RETENTION_DAYS."""
    partitions_ahead(timezone.now())
    if not settings.RETENTION_DAYS:
        return "retention is off"
    removed = telemetry_prune(older_than=timezone.now() - timedelta(days=settings.RETENTION_DAYS))
    return f"deleted {removed} snapshot(s) older than {settings.RETENTION_DAYS} days"


def hosts_watch_task() -> str:
    """Every minute: tell people of hosts that went silent or came back (telemetry.hosts.hosts_watch)."""
    from telemetry.hosts import hosts_watch

    went, back = hosts_watch()
    return f"late: {', '.join(went) or 'none'}; back: {', '.join(back) or 'none'}"

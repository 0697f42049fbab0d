"""Telemetry's reads: the Live Telemetry page's figures and the flagged records. Nothing here writes."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Max, Min, Sum
from django.utils import timezone

from telemetry.models import Endpoint, ProcessRecord, Snapshot


def telemetry_summary(*, recent: int = 10) -> dict:
    """The figures at the top of the Live Telemetry page."""
    totals = Snapshot.objects.aggregate(
        records=Sum("process_count"), first=Min("timestamp"), last=Max("timestamp")
    )
    records = totals["records"] or 0
    hours = 0.0
    if totals["first"] and totals["last"]:
        hours = max((totals["last"] - totals["first"]).total_seconds() / 3600, 0.0)
    since = timezone.now() - timedelta(hours=1)
    # By when the records were taken, not when they arrived: a backlog or a demo loaded at once is not a rate.
    last_hour = Snapshot.objects.filter(timestamp__gte=since, timestamp__lte=timezone.now()).aggregate(
        n=Sum("process_count"))["n"] or 0
    # total_records and the rate count every stored process record, an event's (one record) too;
    # the recent snapshots are snapshots.
    recent_rows = (
        Snapshot.objects.filter(source=Snapshot.Source.SNAPSHOT).select_related("endpoint")
        .order_by("-timestamp", "-id")[:recent]
    )
    return {
        "total_records": records,
        "unique_processes": _unique_processes(),
        "unique_hosts": Endpoint.objects.count(),
        "hours_collected": round(hours, 1),
        "collection_rate_per_hour": last_hour,
        "recent_snapshots": [
            {"id": s.pk, "hostname": s.endpoint.hostname, "timestamp": s.timestamp, "process_count": s.process_count,
             "anomaly_count": s.anomaly_count, "scored": s.model_number is not None, "model_version": s.model_number,
             "names_only": s.endpoint.names_only}
            for s in recent_rows
        ],
        # Hosts whose agent sends process names only (a Voltaxe Sentinel): judged by name rarity alone.
        "names_only_hosts": list(
            Endpoint.objects.filter(names_only=True).order_by("hostname").values_list("hostname", flat=True)[:200]
        ),
        "open_anomalies": ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN).count(),
    }


def _unique_processes() -> int:
    """Distinct programs seen in the last 24 hours (a distinct count over all history grows with it)."""
    value = cache.get("telemetry:unique_processes")
    if value is None:
        since = timezone.now() - timedelta(hours=24)
        value = ProcessRecord.objects.filter(observed_at__gte=since).values("name_norm").distinct().count()
        cache.set("telemetry:unique_processes", value, 60)
    return value


def anomalies_list(*, since: datetime | None = None, hostname: str = "", status: str = "", limit: int = 50, offset: int = 0):
    """Flagged process records, newest first; returns (rows, has_more)."""
    qs = ProcessRecord.objects.filter(flagged=True).select_related("endpoint")
    if since:
        qs = qs.filter(observed_at__gte=since)
    if hostname:
        qs = qs.filter(endpoint__hostname=hostname)
    if status:
        qs = qs.filter(status=status)
    rows = list(qs.order_by("-observed_at", "-id")[offset:offset + limit + 1])
    return rows[:limit], len(rows) > limit

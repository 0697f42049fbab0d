"""Retention: telemetry older than the cut is dropped (whole partitions first, then in batches)."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction

from telemetry.models import ProcessRecord, Snapshot
from telemetry.partitions import partitioned, partitions_drop_before
from telemetry.rollups import rollups_prune

logger = logging.getLogger(__name__)


def telemetry_prune(*, older_than: datetime, batch: int = 200) -> int:
    """Delete telemetry older than `older_than`; returns how many snapshots went.

    On PostgreSQL whole daily partitions of process records are dropped first; what
    is left (the day the cut falls in, the default partition, the snapshots) goes a
    batch at a time, so no lock is held long. The rollups lose the days wholly before
    the cut (telemetry/rollups.py).
    """
    rollups_prune(before=older_than.astimezone(UTC).date())
    if partitioned():
        dropped = partitions_drop_before(older_than)
        if dropped:
            logger.info("Dropped the process records of %s", ", ".join(f"{d:%Y-%m-%d}" for d in dropped))
    deleted = 0
    while True:
        ids = list(Snapshot.objects.filter(timestamp__lt=older_than).order_by("timestamp").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            # Bounded by time too, so PostgreSQL looks only in the partitions old enough to hold them.
            ProcessRecord.objects.filter(snapshot_id__in=ids, observed_at__lt=older_than).delete()
            Snapshot.objects.filter(pk__in=ids).delete()
        deleted += len(ids)

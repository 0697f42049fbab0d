"""Daily partitions of the process-record table on PostgreSQL.

Process records are most of the data and leave it by age, so on PostgreSQL the table
is partitioned by `observed_at`, one partition a UTC day, plus a default partition for
rows no daily partition covers (history older than the partitions, a skewed clock).
Retention then drops whole days, a catalogue change that takes milliseconds instead of
a delete that holds locks for minutes. SQLite keeps one table and the batched delete.

Partitions are created ahead of time by the hourly retention job (and by the migration),
never for a day the default partition already holds rows of: PostgreSQL refuses that,
and those rows are deleted in batches when their time comes.
"""
from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction

logger = logging.getLogger(__name__)

TABLE = "telemetry_processrecord"
DEFAULT = f"{TABLE}_default"
PREFIX = f"{TABLE}_p"
AHEAD_DAYS = 7


def partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass", [TABLE])
        return cursor.fetchone() is not None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def partition_days() -> list[date]:
    """The days that have a partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass AND c.relname LIKE %s", [TABLE, PREFIX + "%"],
        )
        return sorted(datetime.strptime(name[len(PREFIX):], "%Y%m%d").date() for (name,) in cursor.fetchall())


def partitions_ensure(*, first: date, last: date) -> list[date]:
    """Create the daily partitions from `first` to `last` (inclusive) that are missing; returns the days created.

    A day the default partition already holds rows of is skipped (PostgreSQL would refuse it).
    """
    if not partitioned():
        return []
    existing, created = set(partition_days()), []
    day = first
    while day <= last:
        if day not in existing:
            start, end = _day_start(day), _day_start(day + timedelta(days=1))
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT 1 FROM {DEFAULT} WHERE observed_at >= %s AND observed_at < %s LIMIT 1",
                               [start, end])
                if cursor.fetchone() is None:
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {PREFIX}{day:%Y%m%d} PARTITION OF {TABLE} "
                        f"FOR VALUES FROM (%s) TO (%s)", [start, end],
                    )
                    created.append(day)
                else:
                    logger.warning("No partition for %s: the default partition already holds rows of that day", day)
        day += timedelta(days=1)
    return created


def partitions_ahead(now: datetime) -> list[date]:
    """Today and the next AHEAD_DAYS days, so incoming rows never land in the default partition."""
    today = now.astimezone(UTC).date()
    return partitions_ensure(first=today, last=today + timedelta(days=AHEAD_DAYS))


def partitions_drop_before(cutoff: datetime) -> list[date]:
    """Drop the partitions that end at or before `cutoff`; returns their days.

    Each drop is its own short transaction with a lock timeout, so it never queues
    behind a long read (and blocks everything behind it); a day it cannot lock now
    is left for the next run.
    """
    dropped = []
    for day in partition_days():
        if _day_start(day + timedelta(days=1)) > cutoff:
            break
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                cursor.execute(f"DROP TABLE {PREFIX}{day:%Y%m%d}")
            dropped.append(day)
        except Exception as exc:  # lock timeout: try again at the next run
            logger.warning("Could not drop the partition of %s now (%s); the next run will", day, exc)
    return dropped


# --- the migration from one table ---------------------------------------------------------------

def partition_existing_table(schema_editor, *, now: datetime, retention_days: int) -> None:
    """Turn the plain table into a partitioned one, keeping every row, index and constraint name.

    For an existing database this copies the rows in one statement inside the migration:
    plan a maintenance window for a large table (README: "Retention by partition").
    """
    run = schema_editor.execute
    old = f"{TABLE}_unpartitioned"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass", [TABLE])
        if cursor.fetchone() is not None:  # migrated back and forth: reversing kept the partitions
            return
        cursor.execute(f"SELECT min(observed_at), max(observed_at), coalesce(max(id), 0) FROM {TABLE}")
        oldest, newest, max_id = cursor.fetchone()
    run(f"ALTER TABLE {TABLE} RENAME TO {old}")
    run(f"ALTER TABLE {old} ALTER COLUMN id DROP IDENTITY IF EXISTS")
    for name in ("telemetry_processrecord_pkey", "process_endpoint_time", "process_flagged", "process_observed_at",
                 "process_open_flag", "telemetry_processrecord_snapshot_id_19cfa880"):
        run(f"ALTER INDEX IF EXISTS {name} RENAME TO {name}_old")
    for name in ("telemetry_processrec_endpoint_id_5d49c158_fk_telemetry",
                 "telemetry_processrec_snapshot_id_19cfa880_fk_telemetry"):
        run(f"ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {name}")
    run(f"CREATE TABLE {TABLE} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (observed_at)")
    # PostgreSQL 15 has no identity columns on partitioned tables: a sequence owned by the column instead.
    run(f"CREATE SEQUENCE {TABLE}_id_seq START WITH {max_id + 1} OWNED BY {TABLE}.id")
    run(f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')")
    # The partition key must be part of the primary key; ids stay unique through the sequence.
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT telemetry_processrecord_pkey PRIMARY KEY (id, observed_at)")
    run(f"CREATE INDEX process_endpoint_time ON {TABLE} (endpoint_id, observed_at)")
    run(f"CREATE INDEX process_flagged ON {TABLE} (observed_at DESC) WHERE flagged")
    run(f"CREATE INDEX process_observed_at ON {TABLE} (observed_at)")
    run(f"CREATE INDEX process_open_flag ON {TABLE} (observed_at) WHERE flagged AND status = 'open'")
    run(f"CREATE INDEX telemetry_processrecord_snapshot_id_19cfa880 ON {TABLE} (snapshot_id)")
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT telemetry_processrec_endpoint_id_5d49c158_fk_telemetry "
        f"FOREIGN KEY (endpoint_id) REFERENCES telemetry_endpoint(id) DEFERRABLE INITIALLY DEFERRED")
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT telemetry_processrec_snapshot_id_19cfa880_fk_telemetry "
        f"FOREIGN KEY (snapshot_id) REFERENCES telemetry_snapshot(id) DEFERRABLE INITIALLY DEFERRED")
    run(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")
    today = now.astimezone(UTC).date()
    # Days from the oldest row kept (an empty table starts at yesterday; older rows go to the default).
    first = today - timedelta(days=1)
    if oldest is not None:
        first = oldest.astimezone(UTC).date()
        if retention_days:
            first = max(first, today - timedelta(days=retention_days))
    last = max(today, newest.astimezone(UTC).date() if newest else today) + timedelta(days=AHEAD_DAYS)
    day = min(first, today)
    while day <= last:
        start, end = _day_start(day), _day_start(day + timedelta(days=1))
        run(f"CREATE TABLE {PREFIX}{day:%Y%m%d} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)", [start, end])
        day += timedelta(days=1)
    run(f"INSERT INTO {TABLE} SELECT * FROM {old}")
    run(f"DROP TABLE {old}")

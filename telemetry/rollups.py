"""Daily process rollups: what training reads instead of the raw process records.

One row per (host, UTC day, program, path, parent, user, argument tokens) with the count, the
sums of CPU and memory (and of their squares), and the count and CPU sum at each hour of the
day. The hour is a set of 24 columns, not a key: a program seen every hour costs one row a day,
not 24, and the features still get what they need per hour of the day (busy hours, schedules).

``HostDay`` counts each host's snapshots a day, the denominator of every share the features take.

Rows are added in the ingestion transaction (``rollups_add``), so a committed snapshot is in the
rollups or in neither. They hold every stored record whatever its verdict: a verdict changes
when a model re-scores or someone triages, so training subtracts the few records it must leave
out (flagged and not approved) from the raw table instead of the rollups keeping verdicts.
Retention removes whole days (``rollups_prune``); ``rollups_rebuild`` makes them again from the
raw records (an existing database, or after records were deleted by hand).
"""
from __future__ import annotations

import hashlib
import io
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Count, F, FloatField, Max, Sum, Value
from django.db.models.functions import Cast, Coalesce, TruncDate

HOURS = range(24)
HOUR_COUNTS = tuple(f"n{h:02d}" for h in HOURS)
HOUR_CPU = tuple(f"cpu{h:02d}" for h in HOURS)
KEY_TEXT = ("name_norm", "exe_norm", "parent_name", "username", "args_norm")
SUMS = ("n", "cpu_sum", "cpu_sq", "mem_sum", "mem_sq")
MIB = 1048576.0
# A record's CPU and memory (MiB) as the sums take them, a missing figure as 0: the rebuild here
# and training's left-out records (axon.services.window.window_aggregate) add up the same way.
CPU = Coalesce(F("cpu_percent"), Value(0.0))
MEM_MIB = Coalesce(Cast(F("memory_rss"), FloatField()), Value(0.0)) / Value(MIB)


@lru_cache(maxsize=65536)
def combo_id(name: str, exe: str, parent: str, user: str, args: str) -> uuid.UUID:
    """A fixed-size key for the five strings (a path alone may be 2 KiB, too long for a unique index)."""
    text = "\x1f".join((name, exe, parent, user, args)).encode("utf-8", "surrogatepass")
    return uuid.UUID(bytes=hashlib.blake2b(text, digest_size=16).digest())


def _accumulate(records: Iterable[tuple]) -> dict[tuple, list]:
    """(endpoint_id, day, hour, name, exe, parent, user, args, cpu, memory bytes) -> {(endpoint_id, day, hour, combo): sums}."""
    out: dict[tuple, list] = {}
    for endpoint_id, day, hour, name, exe, parent, user, args, cpu, rss in records:
        key = (endpoint_id, day, hour, combo_id(name, exe, parent, user, args))
        acc = out.get(key)
        if acc is None:
            acc = out[key] = [name, exe, parent, user, args, 0, 0.0, 0.0, 0.0, 0.0]
        cpu = cpu or 0.0
        mem = (rss or 0) / MIB
        acc[5] += 1
        acc[6] += cpu
        acc[7] += cpu * cpu
        acc[8] += mem
        acc[9] += mem * mem
    return out


def _upsert(model, sums: dict[tuple, list]) -> None:
    """Add the sums to their rows: staged on PostgreSQL (below); elsewhere a VALUES upsert per hour of
    the day (each sets that hour's two columns).

    Keys go in sorted order, so two transactions adding to the same rows lock them in the same
    order and cannot deadlock each other.
    """
    if not sums:
        return
    if connection.vendor == "postgresql":
        _upsert_staged(model, sums)
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    by_hour: dict[int, list] = defaultdict(list)
    for (endpoint_id, day, hour, combo), acc in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3])):
        by_hour[hour].append((endpoint_id, day, combo, *acc, acc[5], acc[6]))
    base = ["endpoint_id", "day", "combo", *KEY_TEXT, *SUMS]
    with connection.cursor() as cursor:
        for hour, rows in sorted(by_hour.items()):
            columns = [*base, HOUR_COUNTS[hour], HOUR_CPU[hour]]
            added = [*SUMS, HOUR_COUNTS[hour], HOUR_CPU[hour]]
            update = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in added)
            row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
            # SQLite allows 32766 parameters a statement; 15 a row.
            for start in range(0, len(rows), 2000):
                chunk = rows[start:start + 2000]
                # 32 hex digits: how Django stores a UUID on SQLite, and a uuid literal PostgreSQL reads.
                params = [v.hex if isinstance(v, uuid.UUID) else
                          connection.ops.adapt_datefield_value(v) if isinstance(v, date) else v
                          for row in chunk for v in row]
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(map(qn, columns))}) VALUES {', '.join([row_sql] * len(chunk))} "
                    f"ON CONFLICT (endpoint_id, day, combo) DO UPDATE SET {update}", params)


_STAGE = "voltaxe_rollup_stage"
# COPY's text format: these four characters are escaped, \N is NULL (validation refuses NUL bytes).
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _upsert_staged(model, sums: dict[tuple, list]) -> None:
    """PostgreSQL: COPY the sums into a temporary table and add them with one INSERT ... SELECT.

    A VALUES list of a batch's few thousand rows (15 parameters each) cost more to send and parse
    than the upsert itself: 7 ms a 300-process snapshot, a third of ingestion's time; staged, 3.3 ms.
    """
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    body = "".join(
        f"{endpoint_id}\t{day.isoformat()}\t{hour}\t{combo.hex}\t"
        + "\t".join(v.translate(COPY_ESCAPES) for v in acc[:5])
        + f"\t{acc[5]}\t{acc[6]!r}\t{acc[7]!r}\t{acc[8]!r}\t{acc[9]!r}\n"
        for (endpoint_id, day, hour, combo), acc in sums.items())
    hours = ", ".join(f"sum(CASE WHEN hour = {h} THEN n ELSE 0 END), sum(CASE WHEN hour = {h} THEN cpu_sum ELSE 0 END)"
                      for h in HOURS)
    columns = ["endpoint_id", "day", "combo", *KEY_TEXT, *SUMS, *(c for pair in zip(HOUR_COUNTS, HOUR_CPU) for c in pair)]
    # Only the hours the batch has (usually one): the others would add 0, and each SET costs.
    present = sorted({hour for _, _, hour, _ in sums})
    added = (*SUMS, *(HOUR_COUNTS[h] for h in present), *(HOUR_CPU[h] for h in present))
    update = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in added)
    # One transaction (ingestion's, or its own; no savepoint): the staged rows live until its commit.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (endpoint_id bigint, day date, hour smallint, combo uuid, "
            "name_norm text, exe_norm text, parent_name text, username text, args_norm text, n bigint, "
            "cpu_sum float8, cpu_sq float8, mem_sum float8, mem_sq float8) ON COMMIT DELETE ROWS")
        cursor.cursor.copy_expert(f"COPY {_STAGE} FROM STDIN", io.StringIO(body))
        # Sorted, so two transactions adding to the same rows lock them in the same order.
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(map(qn, columns))}) "
            f"SELECT endpoint_id, day, combo, {', '.join(f'min({c})' for c in KEY_TEXT)}, "
            f"{', '.join(f'sum({c})' for c in SUMS)}, {hours} FROM {_STAGE} "
            f"GROUP BY endpoint_id, day, combo ORDER BY endpoint_id, day, combo "
            f"ON CONFLICT (endpoint_id, day, combo) DO UPDATE SET {update}")
        # A later batch of the same transaction starts empty. DELETE, not TRUNCATE: that would give
        # the table a new file, and write the catalogue, at every ingestion.
        cursor.execute(f"DELETE FROM {_STAGE}")


def _host_days_upsert(model, days: dict[tuple[int, date], list]) -> None:
    """Add {(endpoint_id, day): [snapshots, last time]} to the host days, in sorted order (see _upsert)."""
    if not days:
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    rows = sorted(days.items())
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):  # 4 parameters a row, under SQLite's 32766
            chunk = rows[start:start + 5000]
            params = [v for (endpoint_id, day), (n, last) in chunk
                      for v in (endpoint_id, connection.ops.adapt_datefield_value(day), n,
                                connection.ops.adapt_datetimefield_value(last))]
            cursor.execute(
                f"INSERT INTO {table} (endpoint_id, day, snapshots, last_at) "
                f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(chunk))} "
                f"ON CONFLICT (endpoint_id, day) DO UPDATE SET snapshots = {table}.snapshots + excluded.snapshots, "
                f"last_at = CASE WHEN excluded.last_at > {table}.last_at THEN excluded.last_at ELSE {table}.last_at END",
                params)


def rollups_add(rows: Iterable[dict], snapshots: Iterable[tuple[int, datetime]]) -> None:
    """Add freshly stored process records (the dicts ingestion writes, with their ``day``) and their
    snapshots ((endpoint_id, time) pairs) to the rollups."""
    from telemetry.models import HostDay, ProcessRollup

    _upsert(ProcessRollup, _accumulate(
        (r["endpoint_id"], r["day"], r["hour"], r["name_norm"], r["exe_norm"], r["parent_name"], r["username"],
         r["args_norm"], r["cpu_percent"], r["memory_rss"]) for r in rows))
    days: dict[tuple[int, date], list] = {}
    for endpoint_id, at in snapshots:
        acc = days.setdefault((endpoint_id, at.astimezone(UTC).date()), [0, at])
        acc[0] += 1
        acc[1] = max(acc[1], at)
    _host_days_upsert(HostDay, days)


def rollups_rebuild(*, models=None, endpoint_ids: Iterable[int] | None = None) -> int:
    """Make the rollups again from the raw records and snapshots (all hosts, or these); returns the rows written.

    The database groups the records by day and hour first, so Python sees one row per
    (host, day, hour, combination). `models`: (Snapshot, ProcessRecord, HostDay, ProcessRollup),
    so a migration can pass its own.
    """
    if models is None:
        from telemetry.models import HostDay, ProcessRecord, ProcessRollup, Snapshot
        models = (Snapshot, ProcessRecord, HostDay, ProcessRollup)
    snapshot_model, record_model, host_day_model, rollup_model = models
    snapshots, records = snapshot_model.objects.all(), record_model.objects.all()
    host_days, rollups = host_day_model.objects.all(), rollup_model.objects.all()
    if endpoint_ids is not None:
        endpoint_ids = list(endpoint_ids)
        snapshots, records, host_days, rollups = (
            qs.filter(endpoint_id__in=endpoint_ids) for qs in (snapshots, records, host_days, rollups))
    host_days.delete()
    rollups.delete()
    if any(f.name == "source" for f in snapshot_model._meta.fields):
        # Event carriers are no snapshots. (Migration 0012's models predate them, and it has none.)
        snapshots = snapshots.filter(source="snapshot")
    per_day = (snapshots.annotate(day=TruncDate("timestamp", tzinfo=UTC)).order_by()
               .values_list("endpoint_id", "day").annotate(n=Count("id"), last=Max("timestamp")))
    _host_days_upsert(host_day_model, {(e, d): [n, last] for e, d, n, last in per_day})
    grouped = (
        records.annotate(day=TruncDate("observed_at", tzinfo=UTC)).order_by()
        .values_list("endpoint_id", "day", "hour", *KEY_TEXT)
        .annotate(n=Count("id"), cpu_sum=Sum(CPU), cpu_sq=Sum(CPU * CPU), mem_sum=Sum(MEM_MIB), mem_sq=Sum(MEM_MIB * MEM_MIB))
    )
    batch: dict[tuple, list] = {}
    for endpoint_id, day, hour, name, exe, parent, user, args, n, *sums in grouped.iterator(chunk_size=20_000):
        key = (endpoint_id, day, hour, combo_id(name, exe, parent, user, args))
        batch[key] = [name, exe, parent, user, args, n, *(s or 0.0 for s in sums)]
        if len(batch) >= 20_000:
            _upsert(rollup_model, batch)
            batch = {}
    _upsert(rollup_model, batch)
    return rollups.count()


def rollups_prune(*, before: date) -> int:
    """Forget the days before `before` (retention); returns the rollup rows deleted."""
    from telemetry.models import HostDay, ProcessRollup

    HostDay.objects.filter(day__lt=before).delete()
    return ProcessRollup.objects.filter(day__lt=before).delete()[0]

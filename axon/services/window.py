"""The training window, read from the daily rollups (telemetry/rollups.py)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, FloatField, Max, Min, Q, Sum
from django.db.models.functions import Cast

from axon.detector.features import SUM_COLUMNS, ComboTable, WindowData
from axon.detector.lineage import CommandTable
from axon.selectors import exe_key
from telemetry.models import Endpoint, HostDay, ProcessRecord, ProcessRollup, Snapshot
from telemetry.rollups import CPU, HOUR_COUNTS, HOUR_CPU, KEY_TEXT, MEM_MIB, SUMS

TRAINABLE = Q(flagged__isnull=True) | Q(flagged=False) | Q(status=ProcessRecord.Status.APPROVED)
# Its complement, spelled so that PostgreSQL reads it from the flagged-records index (~TRAINABLE,
# with Django's NULL guards, scanned the whole window: 333 ms against 0.2 ms at a million records).
_LEFT_OUT = Q(flagged=True) & ~Q(status=ProcessRecord.Status.APPROVED)


@dataclass
class _Forgotten:
    """What hosts that came back as other machines ran before (usually no host): filters on each table read."""

    old_days: Q = field(default_factory=Q)
    old_records: Q = field(default_factory=Q)
    cut_records: Q = field(default_factory=Q)
    cut_snapshots: Q = field(default_factory=Q)


def window_aggregate(*, since: datetime, until: datetime):
    """The window as the model needs it, read from the daily rollups (telemetry/rollups.py).

    The cost follows distinct combinations a day, not records. The window opens at midnight UTC
    of `since`'s day, as rollups are whole days (``counts["window_start"]``). Flagged observations
    nobody approved are left out, so a running attack never becomes ordinary by being retrained
    on: the rollups hold every record, so those few are read from the raw records (in the same
    database snapshot) and subtracted, as is what a reborn host ran on the day it came back,
    before it did. Snapshots a host sent are counted from ``HostDay`` the same way.
    """
    start = datetime.combine(since.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    forgotten = _forgotten(start)
    rollups, left_out, per_host, before_rebirth = _read(start, forgotten)
    sums = _without_left_out(rollups, left_out)
    hosts, endpoint_os = {}, {}
    for pk, hostname, os_ in Endpoint.objects.values_list("pk", "hostname", "os"):
        hosts[pk], endpoint_os[pk] = hostname, os_
    table, command_table = _combos(rollups, sums, hosts, endpoint_os)
    host_snapshots, data_until = {}, None
    for endpoint_id, n, last in per_host:
        host_snapshots[hosts[endpoint_id]] = n - before_rebirth.get(endpoint_id, 0)
        data_until = last if data_until is None or last > data_until else data_until
    host_os = {hosts[endpoint_id]: endpoint_os[endpoint_id] for endpoint_id, _, _ in per_host}
    window = WindowData(combos=table, host_snapshots=host_snapshots, host_os=host_os, days=(until - start).days,
                        commands=command_table)
    counts = {
        "records": int(table.count.sum()) if len(table) else 0,
        "processes": len(set(table.name)),
        "hosts": len(host_snapshots),
        "data_until": data_until,
        "window_start": start,
    }
    return window, counts


def _forgotten(start: datetime) -> _Forgotten:
    forgotten = _Forgotten()
    reborn: list[tuple[int, datetime]] = list(
        Endpoint.objects.filter(reborn_at__gt=start).values_list("pk", "reborn_at"))  # type: ignore[arg-type]
    for endpoint_id, reborn_at in reborn:
        midnight = datetime.combine(reborn_at.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
        forgotten.old_days |= Q(endpoint_id=endpoint_id, day__lt=midnight.date())
        forgotten.old_records |= Q(endpoint_id=endpoint_id, observed_at__lt=midnight)
        forgotten.cut_records |= Q(endpoint_id=endpoint_id, observed_at__gte=midnight, observed_at__lt=reborn_at)
        forgotten.cut_snapshots |= Q(endpoint_id=endpoint_id, timestamp__gte=midnight, timestamp__lt=reborn_at)
    return forgotten


def _read(start: datetime, forgotten: _Forgotten) -> tuple[list, list, list, dict]:
    """(rollup rows, left-out record groups, snapshots a host, snapshots before a rebirth), from one database snapshot."""
    outermost = not connection.in_atomic_block
    rollup_query = (
        ProcessRollup.objects.filter(day__gte=start.date()).exclude(forgotten.old_days).order_by()
        .values("endpoint_id", "combo")  # the grouping...
        .annotate(**{f"{k}_": Min(k) for k in KEY_TEXT},
                  **{f"{c}_": Cast(Sum(c), FloatField()) for c in (*SUMS, *HOUR_COUNTS, *HOUR_CPU)})
        # ...and what is read of it: the digest is only a key.
        .values_list("endpoint_id", *(f"{k}_" for k in KEY_TEXT), *(f"{c}_" for c in (*SUMS, *HOUR_COUNTS, *HOUR_CPU)))
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if outermost:  # one snapshot for the rollups and what is taken from them
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # A long GROUP BY is no place for the JIT (2.4 s of compiling to save less), and a hash
            # of a big fleet's combos (about 100 MB a process at 1,000 hosts) beats sorting them on
            # disk: 2.6 s instead of 4.1 s. Below 256 MB the planner chose the sort.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
        # Raw rows, without the ORM's per-value converters: 70,000 rows of 53 sums at 1,000 hosts.
        cursor.execute(*rollup_query.query.sql_with_params())
        rollups = cursor.fetchall()
        left_out = list(
            ProcessRecord.objects.filter(observed_at__gte=start).filter(_LEFT_OUT | forgotten.cut_records)
            .exclude(forgotten.old_records).order_by()
            .values_list("endpoint_id", *KEY_TEXT, "hour")
            .annotate(n=Count("id"), cpu_sum=Sum(CPU), cpu_sq=Sum(CPU * CPU), mem_sum=Sum(MEM_MIB),
                      mem_sq=Sum(MEM_MIB * MEM_MIB))
        )
        per_host = list(
            HostDay.objects.filter(day__gte=start.date()).exclude(forgotten.old_days).order_by()
            .values_list("endpoint_id").annotate(n=Sum("snapshots"), last=Max("last_at"))
        )
        before_rebirth = dict(Snapshot.objects.filter(forgotten.cut_snapshots, source="snapshot").order_by()
                              .values_list("endpoint_id").annotate(n=Count("id"))) if forgotten.cut_snapshots else {}
    return rollups, left_out, per_host, before_rebirth


def _without_left_out(rollups: list, left_out: list) -> np.ndarray:
    """The rollups' sums, less the left-out records of each combination."""
    # Columns: n, cpu_sum, cpu_sq, mem_sum, mem_sq, then the 24 hour counts and the 24 hour CPU sums.
    sums = np.array([r[6:] for r in rollups], dtype=np.float64).reshape(len(rollups), SUM_COLUMNS)
    row_of = {r[:6]: i for i, r in enumerate(rollups)}
    for endpoint_id, name, exe, parent, user, args, hour, n, *taken in left_out:
        i = row_of.get((endpoint_id, name, exe, parent, user, args))
        if i is not None:
            sums[i, :5] -= (n, *(x or 0.0 for x in taken))
            sums[i, 5 + hour] -= n
            sums[i, 29 + hour] -= taken[0] or 0.0
    return sums


def _combos(rollups: list, sums: np.ndarray, hosts: dict, endpoint_os: dict) -> tuple[ComboTable, CommandTable]:
    """Rows folded into the model's combinations (host, name, exe, parent, user), and the command lines apart."""
    keys: dict[tuple, int] = {}
    group = np.zeros(len(rollups), dtype=np.int64)
    command_counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for i, (endpoint_id, name, exe, parent, user, args, *_) in enumerate(rollups):
        host = hosts[endpoint_id]
        # Rows stored before a normalization change (e.g. per-run random folders folded) keep their
        # old exe_norm; normalizing is idempotent, so folding it again here lets them meet the new
        # rows under one key. Once per distinct combination, not per record.
        key = (host, name, exe_key(exe, endpoint_os.get(endpoint_id, "") or "linux"), parent, user)
        group[i] = keys.setdefault(key, len(keys))
        # The command-line tokens are split off, so the combos the forest is drawn from do not
        # multiply with a program's varying arguments.
        if args and sums[i, 0] > 0:
            command_counts[(host, name, args)] += int(sums[i, 0])
    combined = np.zeros((len(keys), SUM_COLUMNS))
    np.add.at(combined, group, sums)
    return ComboTable.from_sums(list(keys), combined), CommandTable.from_rows((*k, n) for k, n in command_counts.items())

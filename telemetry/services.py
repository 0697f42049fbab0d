"""Telemetry services: ingestion and the reads behind the Live Telemetry page."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Min, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from axon.scoring import Observation, Verdicts, observations_score
from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from telemetry.normalize import guess_os, normalize_exe, normalize_name
from telemetry.validation import PayloadError, SnapshotIn, validate_snapshot

MIB = 1024 * 1024

# Names and paths repeat across snapshots; normalizing each once keeps ingestion cheap.
_name_key = lru_cache(maxsize=65536)(normalize_name)
_exe_key = lru_cache(maxsize=65536)(normalize_exe)


@dataclass
class IngestResult:
    body: dict
    created: bool


@dataclass
class _Prepared:
    snapshot: SnapshotIn
    os: str
    names: list[str]
    exes: list[str]
    parents: list[str]
    observations: list[Observation]


def _prepare(snap: SnapshotIn) -> _Prepared:
    os_name = guess_os(snap.os, [p.name for p in snap.processes])
    names = [_name_key(p.name, os_name) for p in snap.processes]
    exes = [_exe_key(p.exe, os_name) for p in snap.processes]
    by_pid: dict[int, str] = {}
    for p, name in zip(snap.processes, names):
        if p.pid is not None:
            by_pid.setdefault(p.pid, name)
    parents = [by_pid.get(p.ppid, "") if p.ppid is not None else "" for p in snap.processes]
    hour = snap.timestamp.hour
    observations = [
        Observation(
            host=snap.hostname, os=os_name, name=name, exe=exe, parent=parent, user=p.username, hour=hour,
            cpu=p.cpu_percent, mem_mib=None if p.memory_rss is None else p.memory_rss / MIB,
        )
        for p, name, exe, parent in zip(snap.processes, names, exes, parents)
    ]
    return _Prepared(snap, os_name, names, exes, parents, observations)


def _validate(payload) -> SnapshotIn:
    return validate_snapshot(
        payload,
        now=timezone.now(),
        max_processes=settings.MAX_PROCESSES_PER_SNAPSHOT,
        max_future=timedelta(seconds=settings.MAX_FUTURE_SKEW_SECONDS),
    )


def _existing_many(keys: set[tuple[str, datetime]]) -> dict[tuple[str, datetime], Snapshot]:
    """The stored snapshots among (hostname, timestamp) pairs, in one query."""
    if not keys:
        return {}
    found = Snapshot.objects.filter(
        endpoint__hostname__in={h for h, _ in keys}, timestamp__in={t for _, t in keys}
    ).select_related("endpoint")
    return {(s.endpoint.hostname, s.timestamp): s for s in found if (s.endpoint.hostname, s.timestamp) in keys}


def _result_body(snapshot: Snapshot, hostname: str) -> dict:
    anomalies = [
        {"index": r["index"], "name": r["name"], "pid": r["pid"], "score": r["score"], "reasons": r["reasons"]}
        for r in ProcessRecord.objects.filter(snapshot=snapshot, flagged=True)
        .order_by("index").values("index", "name", "pid", "score", "reasons")
    ]
    return {
        "snapshot_id": snapshot.pk,
        "hostname": hostname,
        "processes": snapshot.process_count,
        "model_version": snapshot.model_version,
        "anomalies": anomalies,
    }


def _endpoints_touch(preps: list[_Prepared], agent: AgentKey | None) -> dict[str, int]:
    """Create or update each host once; safe against another request creating the same host at the same time."""
    newest: dict[str, _Prepared] = {}
    for prep in preps:
        current = newest.get(prep.snapshot.hostname)
        if current is None or prep.snapshot.timestamp > current.snapshot.timestamp:
            newest[prep.snapshot.hostname] = prep
    ids = dict(Endpoint.objects.filter(hostname__in=newest).values_list("hostname", "pk"))
    for hostname, prep in newest.items():
        if hostname not in ids:
            try:
                with transaction.atomic():
                    ids[hostname] = Endpoint.objects.create(
                        hostname=hostname, os=prep.os, first_seen=prep.snapshot.timestamp,
                        last_seen=prep.snapshot.timestamp, last_agent=agent,
                    ).pk
                continue
            except IntegrityError:  # created by a concurrent request
                ids[hostname] = Endpoint.objects.get(hostname=hostname).pk
        Endpoint.objects.filter(pk=ids[hostname]).update(
            last_seen=Greatest(F("last_seen"), prep.snapshot.timestamp), os=prep.os, last_agent=agent
        )
    return ids


_RECORD_COLUMNS = [f for f in ProcessRecord._meta.concrete_fields if not f.primary_key]


def _records_insert(rows: list[dict]) -> None:
    """Insert process records in pages: the ORM's per-object work is most of ingestion's cost at this volume."""
    if not rows:
        return
    table = connection.ops.quote_name(ProcessRecord._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in _RECORD_COLUMNS)
    attnames = [f.attname for f in _RECORD_COLUMNS]
    values = [tuple(row[a] for a in attnames) for row in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            from psycopg2.extras import execute_values

            execute_values(cursor.cursor, f"INSERT INTO {table} ({columns}) VALUES %s", values, page_size=1000)
        else:
            placeholders = ", ".join(["%s"] * len(attnames))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)


def _record_rows(prep: _Prepared, verdicts: Verdicts, snapshot_id: int, endpoint_id: int) -> list[dict]:
    snap = prep.snapshot
    ops = connection.ops
    observed_at = ops.adapt_datetimefield_value(snap.timestamp)
    scored = verdicts.model_version is not None
    no_reasons = ops.adapt_json_value([], None)
    rows = []
    for i, p in enumerate(snap.processes):
        flagged = verdicts.flagged[i] if scored else None
        rows.append({
            "snapshot_id": snapshot_id, "endpoint_id": endpoint_id, "observed_at": observed_at, "hour": snap.timestamp.hour,
            "index": i, "name": p.name, "name_norm": prep.names[i], "pid": p.pid, "ppid": p.ppid,
            "parent_name": prep.parents[i], "exe": p.exe, "exe_norm": prep.exes[i], "username": p.username,
            "cmdline": p.cmdline, "cpu_percent": p.cpu_percent, "memory_rss": p.memory_rss,
            "score": verdicts.scores[i] if scored else None, "flagged": flagged,
            "reasons": ops.adapt_json_value(verdicts.reasons[i], None) if flagged else no_reasons,
            "model_version": verdicts.model_version, "status": ProcessRecord.Status.OPEN if flagged else "",
        })
    return rows


def _slice(verdicts: Verdicts, start: int, n: int) -> Verdicts:
    if verdicts.model_version is None:
        return Verdicts(model_version=None)
    return Verdicts(
        model_version=verdicts.model_version, scores=verdicts.scores[start:start + n],
        flagged=verdicts.flagged[start:start + n], reasons=verdicts.reasons[start:start + n],
    )


def _ingest(payloads: list, agent: AgentKey | None) -> list[IngestResult | PayloadError]:
    """Validate, score and store snapshots; each stands or falls alone, all are written in one transaction.

    The same (hostname, timestamp) again, in this batch, in an earlier one, or
    from a concurrent request, answers with the stored snapshot.
    """
    results: list[IngestResult | PayloadError | None] = [None] * len(payloads)
    valid: list[tuple[int, SnapshotIn]] = []
    for i, payload in enumerate(payloads):
        try:
            valid.append((i, _validate(payload)))
        except PayloadError as exc:
            results[i] = exc
    existing = _existing_many({(s.hostname, s.timestamp) for _, s in valid})
    fresh: dict[tuple[str, datetime], tuple[int, _Prepared]] = {}
    repeats: list[tuple[int, tuple[str, datetime]]] = []
    for i, snap in valid:
        key = (snap.hostname, snap.timestamp)
        if key in existing or key in fresh:
            repeats.append((i, key))
        else:
            fresh[key] = (i, _prepare(snap))
    preps = [prep for _, prep in fresh.values()]
    verdicts = observations_score([o for prep in preps for o in prep.observations])
    if preps:
        with transaction.atomic():
            endpoint_ids = _endpoints_touch(preps, agent)
            rows, offset = [], 0
            for key, (i, prep) in fresh.items():
                part = _slice(verdicts, offset, len(prep.observations))
                offset += len(prep.observations)
                anomalies = [j for j, f in enumerate(part.flagged) if f]
                try:
                    with transaction.atomic():
                        snapshot = Snapshot.objects.create(
                            endpoint_id=endpoint_ids[key[0]], timestamp=key[1], process_count=len(prep.observations),
                            anomaly_count=len(anomalies), model_version=part.model_version,
                            scored=part.model_version is not None,
                        )
                except IntegrityError:  # a concurrent request stored it first
                    repeats.append((i, key))
                    continue
                rows += _record_rows(prep, part, snapshot.pk, endpoint_ids[key[0]])
                results[i] = IngestResult({
                    "snapshot_id": snapshot.pk, "hostname": key[0], "processes": len(prep.observations),
                    "model_version": part.model_version,
                    "anomalies": [{"index": j, "name": prep.snapshot.processes[j].name, "pid": prep.snapshot.processes[j].pid,
                                   "score": part.scores[j], "reasons": part.reasons[j]} for j in anomalies],
                }, created=True)
            _records_insert(rows)
    if repeats:
        existing.update(_existing_many({key for _, key in repeats if key not in existing}))
        for i, key in repeats:
            results[i] = IngestResult(_result_body(existing[key], key[0]), created=False)
    return cast("list[IngestResult | PayloadError]", results)  # every slot is filled by now


def snapshot_ingest(*, payload, agent: AgentKey | None = None) -> IngestResult:
    """Validate, score and store one snapshot; the same (hostname, timestamp) again returns the stored result.

    Raises PayloadError (nothing stored) for bad input.
    """
    (result,) = _ingest([payload], agent)
    if isinstance(result, PayloadError):
        raise result
    return result


def snapshot_ingest_batch(*, payloads: list, agent: AgentKey | None = None) -> list[dict]:
    """Each snapshot stands or falls alone; they are scored in one call to the model and written in one transaction."""
    return [
        {"error": {"detail": r.detail, "errors": r.errors}} if isinstance(r, PayloadError) else r.body
        for r in _ingest(payloads, agent)
    ]


# --- reads --------------------------------------------------------------------------


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
    last_hour = Snapshot.objects.filter(received_at__gte=since).aggregate(n=Sum("process_count"))["n"] or 0
    recent_rows = (
        Snapshot.objects.select_related("endpoint").order_by("-timestamp", "-id")[:recent]
    )
    return {
        "total_records": records,
        "unique_processes": _unique_processes(),
        "unique_hosts": Endpoint.objects.count(),
        "hours_collected": round(hours, 1),
        "collection_rate_per_hour": last_hour,
        "recent_snapshots": [
            {"id": s.pk, "hostname": s.endpoint.hostname, "timestamp": s.timestamp, "process_count": s.process_count,
             "anomaly_count": s.anomaly_count, "scored": s.scored, "model_version": s.model_version}
            for s in recent_rows
        ],
        "open_anomalies": ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN).count(),
    }


def _unique_processes() -> int:
    """Distinct programs seen in the last 24 hours (a distinct count over all history grows with it)."""
    from django.core.cache import cache

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



def telemetry_prune(*, older_than: datetime, batch: int = 200) -> int:
    """Delete snapshots (and their processes) older than `older_than`, a batch at a time so no lock is held long."""
    deleted = 0
    while True:
        ids = list(Snapshot.objects.filter(timestamp__lt=older_than).order_by("timestamp").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            ProcessRecord.objects.filter(snapshot_id__in=ids).delete()
            Snapshot.objects.filter(pk__in=ids).delete()
        deleted += len(ids)

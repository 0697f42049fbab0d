"""Telemetry services: ingestion and the reads behind the Live Telemetry page."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import IntegrityError, transaction
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


def _existing(hostname: str, timestamp: datetime) -> Snapshot | None:
    return Snapshot.objects.filter(endpoint__hostname=hostname, timestamp=timestamp).select_related("endpoint").first()


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


def _store(prep: _Prepared, verdicts: Verdicts, agent: AgentKey | None) -> IngestResult:
    snap = prep.snapshot
    scored = verdicts.model_version is not None
    anomalies = [i for i, f in enumerate(verdicts.flagged) if f] if scored else []
    try:
        with transaction.atomic():
            updated = Endpoint.objects.filter(hostname=snap.hostname).update(
                last_seen=Greatest(F("last_seen"), snap.timestamp), os=prep.os, last_agent=agent
            )
            if updated:
                endpoint = Endpoint.objects.only("pk").get(hostname=snap.hostname)
            else:
                endpoint = Endpoint.objects.create(
                    hostname=snap.hostname, os=prep.os, first_seen=snap.timestamp, last_seen=snap.timestamp,
                    last_agent=agent,
                )
            snapshot = Snapshot.objects.create(
                endpoint=endpoint, timestamp=snap.timestamp, process_count=len(snap.processes),
                anomaly_count=len(anomalies), model_version=verdicts.model_version, scored=scored,
            )
            ProcessRecord.objects.bulk_create(
                [
                    ProcessRecord(
                        snapshot=snapshot, endpoint=endpoint, observed_at=snap.timestamp, hour=snap.timestamp.hour,
                        index=i, name=p.name, name_norm=prep.names[i], pid=p.pid, ppid=p.ppid,
                        parent_name=prep.parents[i], exe=p.exe, exe_norm=prep.exes[i], username=p.username,
                        cmdline=p.cmdline, cpu_percent=p.cpu_percent, memory_rss=p.memory_rss,
                        score=verdicts.scores[i] if scored else None,
                        flagged=verdicts.flagged[i] if scored else None,
                        reasons=verdicts.reasons[i] if scored else [],
                        model_version=verdicts.model_version,
                        status=ProcessRecord.Status.OPEN if scored and verdicts.flagged[i] else "",
                    )
                    for i, p in enumerate(snap.processes)
                ],
                batch_size=500,
            )
    except IntegrityError:
        # The same snapshot arrived twice at once: the other request stored it.
        existing = _existing(snap.hostname, snap.timestamp)
        if existing is None:
            raise
        return IngestResult(_result_body(existing, snap.hostname), created=False)
    body = {
        "snapshot_id": snapshot.pk,
        "hostname": snap.hostname,
        "processes": len(snap.processes),
        "model_version": verdicts.model_version,
        "anomalies": [
            {"index": i, "name": snap.processes[i].name, "pid": snap.processes[i].pid,
             "score": verdicts.scores[i], "reasons": verdicts.reasons[i]}
            for i in anomalies
        ],
    }
    return IngestResult(body, created=True)


def snapshot_ingest(*, payload, agent: AgentKey | None = None) -> IngestResult:
    """Validate, score and store one snapshot; the same (hostname, timestamp) again returns the stored result.

    Raises PayloadError (nothing stored) for bad input.
    """
    snap = _validate(payload)
    existing = _existing(snap.hostname, snap.timestamp)
    if existing is not None:
        return IngestResult(_result_body(existing, snap.hostname), created=False)
    prep = _prepare(snap)
    return _store(prep, observations_score(prep.observations), agent)


def snapshot_ingest_batch(*, payloads: list, agent: AgentKey | None = None) -> list[dict]:
    """Each snapshot stands or falls alone; they are scored in one call to the model."""
    results: list[dict | None] = [None] * len(payloads)
    prepared: list[tuple[int, _Prepared]] = []
    for i, payload in enumerate(payloads):
        try:
            snap = _validate(payload)
        except PayloadError as exc:
            results[i] = {"error": {"detail": exc.detail, "errors": exc.errors}}
            continue
        existing = _existing(snap.hostname, snap.timestamp)
        if existing is not None:
            results[i] = _result_body(existing, snap.hostname)
        else:
            prepared.append((i, _prepare(snap)))
    all_rows = [o for _, prep in prepared for o in prep.observations]
    verdicts = observations_score(all_rows)
    offset = 0
    for i, prep in prepared:
        n = len(prep.observations)
        if verdicts.model_version is None:
            part = Verdicts(model_version=None)
        else:
            part = Verdicts(
                model_version=verdicts.model_version,
                scores=verdicts.scores[offset:offset + n],
                flagged=verdicts.flagged[offset:offset + n],
                reasons=verdicts.reasons[offset:offset + n],
            )
        offset += n
        results[i] = _store(prep, part, agent).body
    return results


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
    from django.core.cache import cache

    # A distinct count over every record is the one costly figure; a minute old is fresh enough.
    value = cache.get("telemetry:unique_processes")
    if value is None:
        value = ProcessRecord.objects.values("name_norm").distinct().count()
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

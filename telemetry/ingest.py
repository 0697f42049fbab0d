"""Ingestion: process snapshots and host reports validated, normalized, scored and stored.

A batch is prepared (names normalized, parents recalled from the host's recent snapshots, CPU streaks carried
on), scored in one call, and written in one transaction by COPY, retried once on a transient error; the same
host and time again is answered from what is stored, or refused, never overwritten."""
from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import cast

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from telemetry.agent_keys import agent_hosts_refused
from telemetry.authentication import Agent
from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from telemetry.normalize import EXITED, command_parts, guess_os, normalize_exe, normalize_name, resolve_parents
from telemetry.rollups import COPY_ESCAPES, rollups_add
from telemetry.scoring import Observation, Verdicts, observations_score, records_stored
from telemetry.validation import PayloadError, SnapshotIn, text_field, validate_snapshot

logger = logging.getLogger(__name__)


MIB = 1024 * 1024
# How far back a host's snapshots name a parent that has exited: a few snapshots, a short time.
PARENT_MEMORY = timedelta(hours=2)
PARENT_MEMORY_SNAPSHOTS = 6

# Names and paths repeat across snapshots; normalizing each once keeps ingestion cheap.
_name_key = lru_cache(maxsize=65536)(normalize_name)
_exe_key = lru_cache(maxsize=65536)(normalize_exe)
_command_key = lru_cache(maxsize=65536)(command_parts)


@dataclass
class IngestResult:
    body: dict
    created: bool


class IngestRefused(Exception):
    """A valid snapshot that may not be stored: 403 (not this key's host) or 409 (that slot is taken)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class _Prepared:
    snapshot: SnapshotIn
    os: str
    names_only: bool
    digest: str
    names: list[str]
    exes: list[str]
    parents: list[str]
    observations: list[Observation]


def _names_only(snap: SnapshotIn) -> bool:
    return all(p.pid is None and p.ppid is None and not p.exe and not p.username for p in snap.processes)


def _digest(snap: SnapshotIn) -> str:
    """What the snapshot says, independent of key order, spacing and time zone notation."""
    content = [snap.hostname, snap.timestamp.isoformat(), snap.os,
               [[p.name, p.pid, p.ppid, p.exe, p.username, p.cmdline, p.cpu_percent, p.memory_rss] for p in snap.processes]]
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()


def _prepare(snap: SnapshotIn, known_os: str = "") -> _Prepared:
    # A snapshot without an OS (the legacy body) keeps the host's known OS rather than a guess from names.
    os_name = guess_os(snap.os or known_os, [p.name for p in snap.processes])
    names = [_name_key(p.name, os_name) for p in snap.processes]
    exes = [_exe_key(p.exe, os_name) for p in snap.processes]
    parents, _ = resolve_parents([p.pid for p in snap.processes], [p.ppid for p in snap.processes], names)
    commands = [_command_key(p.cmdline, name, os_name) for p, name in zip(snap.processes, names)]
    names_only = _names_only(snap)
    hour = snap.timestamp.hour
    observations = [
        Observation(
            host=snap.hostname, os=os_name, name=name, exe=exe, parent=parent, user=p.username, hour=hour,
            cpu=p.cpu_percent, mem_mib=None if p.memory_rss is None else p.memory_rss / MIB,
            script=command[0], args=command[1], names_only=names_only,
        )
        for p, name, exe, parent, command in zip(snap.processes, names, exes, parents, commands)
    ]
    return _Prepared(snap, os_name, names_only, _digest(snap), names, exes, parents, observations)


def _missing_parents(prep: _Prepared) -> set[int]:
    pids = {p.pid for p in prep.snapshot.processes if p.pid is not None}
    return {p.ppid for p in prep.snapshot.processes if p.ppid and p.ppid not in pids}


def _parents_recall(preps: list[_Prepared]) -> None:
    """Name the parents that had exited before a snapshot from the host's few previous snapshots.

    Cheap: only snapshots with a parent pid missing from themselves ask; one query finds the
    hosts' recent snapshots, one more their processes with those pids, and the children already
    named after them (so a long-lived orphan keeps its parent's name once the parent's last
    snapshot is out of reach), by snapshot id, so the index and, on PostgreSQL, the day's
    partitions answer. Earlier snapshots of the same batch, not stored yet, count too.
    """
    wanted = [(prep, missing) for prep in preps if (missing := _missing_parents(prep))]
    if not wanted:
        return
    hosts = {prep.snapshot.hostname for prep, _ in wanted}
    start = min(prep.snapshot.timestamp for prep, _ in wanted) - PARENT_MEMORY
    end = max(prep.snapshot.timestamp for prep, _ in wanted)
    stored: dict[str, list[tuple[datetime, int]]] = {}
    # Snapshots only: a host's many one-process event carriers would push its last snapshots out of reach.
    for sid, host, ts in (Snapshot.objects.filter(endpoint__hostname__in=hosts, timestamp__gte=start, timestamp__lt=end,
                                                  source=Snapshot.Source.SNAPSHOT)
                          .values_list("pk", "endpoint__hostname", "timestamp")):
        stored.setdefault(host, []).append((ts, sid))
    chosen: dict[int, list[int]] = {}
    for prep, _ in wanted:
        ts = prep.snapshot.timestamp
        recent = sorted(x for x in stored.get(prep.snapshot.hostname, []) if ts - PARENT_MEMORY <= x[0] < ts)
        chosen[id(prep)] = [sid for _, sid in recent[-PARENT_MEMORY_SNAPSHOTS:]]
    snapshot_ids = {sid for ids in chosen.values() for sid in ids}
    known: dict[tuple[int, int], str] = {}
    if snapshot_ids:
        pids = {pid for _, m in wanted for pid in m}
        rows = ProcessRecord.objects.filter(
            Q(pid__in=pids) | Q(ppid__in=pids), snapshot_id__in=snapshot_ids, observed_at__gte=start, observed_at__lt=end,
        ).values_list("snapshot_id", "pid", "name_norm", "ppid", "parent_name")
        named: dict[tuple[int, int], str] = {}
        for sid, pid, name, ppid, parent in rows:
            if pid in pids:
                known.setdefault((sid, pid), name)
            if ppid in pids and parent and parent != EXITED:
                named.setdefault((sid, ppid), parent)
        known = {**named, **known}  # the parent's own record wins over what a child was told
    for prep, missing in wanted:
        snap = prep.snapshot
        remembered: dict[int, str] = {}
        for sid in chosen[id(prep)]:  # oldest first: the newest holder of a pid wins
            remembered.update({pid: known[(sid, pid)] for pid in missing if (sid, pid) in known})
        earlier = sorted((o for o in preps if o.snapshot.hostname == snap.hostname
                          and snap.timestamp - PARENT_MEMORY <= o.snapshot.timestamp < snap.timestamp),
                         key=lambda o: o.snapshot.timestamp)
        for other in earlier:
            remembered.update({p.ppid: n for p, n in zip(other.snapshot.processes, other.parents)
                               if p.ppid in missing and n and n != EXITED})
            remembered.update({p.pid: n for p, n in zip(other.snapshot.processes, other.names) if p.pid in missing})
        if not remembered:
            continue
        parents, gone = resolve_parents([p.pid for p in snap.processes], [p.ppid for p in snap.processes], prep.names,
                                        remembered)
        prep.parents[:] = parents
        for observation, parent, exited in zip(prep.observations, parents, gone):
            observation.parent, observation.parent_gone = parent, exited


def _streak_memory(preps: list[_Prepared]) -> None:
    """Number the batch's snapshots in time order (from 1), and hand each host's first one the CPU
    streaks of the host's previous stored snapshot (axon/detector/norms.py): two indexed reads per batch."""
    first: dict[str, _Prepared] = {}
    for rank, prep in enumerate(sorted(preps, key=lambda p: p.snapshot.timestamp), start=1):
        for o in prep.observations:
            o.snapshot = rank
        first.setdefault(prep.snapshot.hostname, prep)
    if not first:
        return
    previous = Q()
    hostnames = {}
    # The host's newest snapshot, not its last_seen: a process-start event moves that too, and
    # carries no streak. A backward step on the snapshots' own (partial) index per host.
    last_snapshot = (Snapshot.objects.filter(endpoint_id=OuterRef("pk"), source=Snapshot.Source.SNAPSHOT)
                     .order_by("-timestamp").values("timestamp")[:1])
    for hostname, endpoint_id, last_at in (Endpoint.objects.filter(hostname__in=first)
                                           .annotate(last_at=Subquery(last_snapshot))
                                           .values_list("hostname", "id", "last_at")):
        if last_at is not None and last_at < first[hostname].snapshot.timestamp:  # a late one is judged on its own
            previous |= Q(endpoint_id=endpoint_id, observed_at=last_at)
            hostnames[endpoint_id] = hostname
    if not hostnames:
        return
    carried: dict[str, dict[str, int]] = {}
    for endpoint_id, name, streak in ProcessRecord.objects.filter(previous, cpu_streak__gt=0).order_by().values_list(
            "endpoint_id", "name_norm").annotate(streak=Max("cpu_streak")):
        carried.setdefault(hostnames[endpoint_id], {})[name] = streak
    for hostname, streaks in carried.items():
        for o in first[hostname].observations:
            o.prior_streak = streaks.get(o.name, 0)


def _rebirths_record(reborn: dict[int, datetime]) -> None:
    """Hosts the model saw come back as another machine: later training forgets what they ran before
    (their old life vouches for nothing). The first such snapshot counts: the model says so of every
    snapshot of the new life until it is retrained without the old one."""
    for endpoint_id, at in reborn.items():
        Endpoint.objects.filter(pk=endpoint_id).filter(
            Q(reborn_at__isnull=True) | Q(reborn_at__lt=at - timedelta(days=settings.TRAINING_WINDOW_DAYS))
        ).update(reborn_at=at)


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
        endpoint__hostname__in={h for h, _ in keys}, timestamp__in={t for _, t in keys}, source=Snapshot.Source.SNAPSHOT,
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
        "model_version": snapshot.model_number,
        "anomalies": anomalies,
    }


def _endpoints_touch(preps: list[_Prepared], agent: AgentKey | None) -> dict[str, int]:
    """Create or update each host once, in one statement, in hostname order; returns {hostname: id}.

    Concurrent batches that introduce the same hosts in other orders used to deadlock on the
    hostname index: every batch now takes its hosts' row locks in the same (sorted) order, before
    it writes anything else, so a batch waits for another instead of crossing it.
    """
    newest: dict[str, _Prepared] = {}
    for prep in preps:
        current = newest.get(prep.snapshot.hostname)
        if current is None or prep.snapshot.timestamp > current.snapshot.timestamp:
            newest[prep.snapshot.hostname] = prep
    ops = connection.ops
    table = ops.quote_name(Endpoint._meta.db_table)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    params: list = []
    for hostname in sorted(newest):
        prep = newest[hostname]
        seen = ops.adapt_datetimefield_value(prep.snapshot.timestamp)
        params += [hostname, prep.os, seen, seen, agent.pk if agent else None, prep.names_only]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(newest))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (hostname, os, first_seen, last_seen, last_agent_id, names_only) VALUES {values} "
            f"ON CONFLICT (hostname) DO UPDATE SET last_seen = {greatest}({table}.last_seen, EXCLUDED.last_seen), "
            f"os = EXCLUDED.os, last_agent_id = EXCLUDED.last_agent_id, names_only = EXCLUDED.names_only "
            f"RETURNING hostname, id",
            params,
        )
        return dict(cursor.fetchall())


_RECORD_COLUMNS = [f for f in ProcessRecord._meta.concrete_fields if not f.primary_key]


def _copy_column(field, values: list) -> list[str]:
    """One column in COPY's text form, by the field's type (a column at a time: a call per value cost more
    than the database's side of the COPY)."""
    if isinstance(field, (models.CharField, models.TextField, models.JSONField)):  # reasons arrive as JSON text
        return ["\\N" if v is None else v.translate(COPY_ESCAPES) for v in values]
    if isinstance(field, models.BooleanField):
        return ["\\N" if v is None else "t" if v else "f" for v in values]
    if isinstance(field, models.DateTimeField):
        return ["\\N" if v is None else v.isoformat() for v in values]
    # numbers: finite, validation refuses NaN and infinity
    return ["\\N" if v is None else str(v) for v in values]


def _records_insert(rows: list[dict]) -> None:
    """Insert process records without the ORM: its per-object work is most of ingestion's cost at this volume.

    PostgreSQL takes them with COPY, one stream instead of a statement per page of 1000 rows: for a
    batch of 100 snapshots of 300 processes, 1.36 s instead of 3.92 s with INSERT ... VALUES
    (execute_values), measured side by side in one process on this 2-core machine. Validation has
    refused NUL bytes and non-finite numbers already, so every value has a text form.
    """
    if not rows:
        return
    table = connection.ops.quote_name(ProcessRecord._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in _RECORD_COLUMNS)
    attnames = [f.attname for f in _RECORD_COLUMNS]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            encoded = [_copy_column(f, [row[f.attname] for row in rows]) for f in _RECORD_COLUMNS]
            body = "\n".join(map("\t".join, zip(*encoded))) + "\n"
            cursor.cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO(body))
        else:
            placeholders = ", ".join(["%s"] * len(attnames))
            values = [tuple(row[a] for a in attnames) for row in rows]
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)


def _record_rows(prep: _Prepared, verdicts: Verdicts, snapshot_id: int, endpoint_id: int) -> list[dict]:
    snap = prep.snapshot
    ops = connection.ops
    observed_at = ops.adapt_datetimefield_value(snap.timestamp)
    day = snap.timestamp.date()
    scored = verdicts.model_number is not None
    no_reasons = "[]"
    rows = []
    for i, p in enumerate(snap.processes):
        flagged = verdicts.flagged[i] if scored else None
        rows.append({
            "snapshot_id": snapshot_id, "endpoint_id": endpoint_id, "observed_at": observed_at, "hour": snap.timestamp.hour,
            "index": i, "name": p.name, "name_norm": prep.names[i], "pid": p.pid, "ppid": p.ppid,
            "parent_name": prep.parents[i], "exe": p.exe, "exe_norm": prep.exes[i], "username": p.username,
            "cmdline": p.cmdline, "script": prep.observations[i].script, "args_norm": prep.observations[i].args,
            "cpu_percent": p.cpu_percent, "memory_rss": p.memory_rss,
            "score": verdicts.scores[i] if scored else None, "flagged": flagged,
            "reasons": json.dumps(verdicts.reasons[i]) if flagged else no_reasons,
            "model_number": verdicts.model_number, "status": ProcessRecord.Status.OPEN if flagged else "",
            "cpu_streak": min(verdicts.streaks[i], 32767) if scored and verdicts.streaks else 0, "sha256": "",
            "day": day,  # for the rollups, not a column
        })
    return rows


def _slice(verdicts: Verdicts, start: int, n: int) -> Verdicts:
    if verdicts.model_number is None:
        return Verdicts(model_number=None)
    return Verdicts(
        model_number=verdicts.model_number, scores=verdicts.scores[start:start + n],
        flagged=verdicts.flagged[start:start + n], reasons=verdicts.reasons[start:start + n],
        streaks=verdicts.streaks[start:start + n], reborn=verdicts.reborn[start:start + n],
    )


def _store(fresh: dict, preps: list[_Prepared], verdicts: Verdicts, agent: AgentKey | None):
    """Write the fresh snapshots in one transaction; returns ({position: result}, [(position, key) stored meanwhile])."""
    stored: dict[int, IngestResult] = {}
    raced: list[tuple[int, tuple[str, datetime]]] = []
    endpoint_ids = _endpoints_touch(preps, agent)
    reborn: dict[int, datetime] = {}
    rows, offset = [], 0
    for key, (i, prep) in fresh.items():
        part = _slice(verdicts, offset, len(prep.observations))
        offset += len(prep.observations)
        anomalies = [j for j, f in enumerate(part.flagged) if f]
        if any(part.reborn):
            reborn.setdefault(endpoint_ids[key[0]], key[1])
        try:
            with transaction.atomic():
                snapshot = Snapshot.objects.create(
                    endpoint_id=endpoint_ids[key[0]], timestamp=key[1], process_count=len(prep.observations),
                    anomaly_count=len(anomalies), model_number=part.model_number, agent=agent,
                    digest=prep.digest,
                )
        except IntegrityError:  # a concurrent request stored it first
            raced.append((i, key))
            continue
        rows += _record_rows(prep, part, snapshot.pk, endpoint_ids[key[0]])
        stored[i] = IngestResult({
            "snapshot_id": snapshot.pk, "hostname": key[0], "processes": len(prep.observations),
            "model_version": part.model_number,
            "anomalies": [{"index": j, "name": prep.snapshot.processes[j].name, "pid": prep.snapshot.processes[j].pid,
                           "score": part.scores[j], "reasons": part.reasons[j]} for j in anomalies],
        }, created=True)
    _records_insert(rows)
    records_stored(rows, {pk: hostname for hostname, pk in endpoint_ids.items()})
    rollups_add(rows, [(endpoint_ids[key[0]], key[1]) for key, (i, _) in fresh.items() if i in stored])
    _rebirths_record(reborn)
    return stored, raced


def _transient(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the database rolled the transaction back, and running it again may succeed."""
    code = getattr(exc.__cause__, "pgcode", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc)


def _retrying_once(write):
    """Run `write` in a transaction, and once more if the database chose it as a deadlock victim.

    Only a second failure reaches the client (as a 503 that says to retry). Inside a caller's
    transaction there is nothing to retry: the caller's transaction is lost as well.
    """
    if connection.in_atomic_block:
        return write()
    try:
        with transaction.atomic():
            return write()
    except OperationalError as exc:
        if not _transient(exc):
            raise
        logger.warning("Ingestion retried after a transient database error: %s", exc)
    with transaction.atomic():
        return write()


def _refusals(agent: AgentKey | None, refused: dict[str, str], request) -> dict[str, IngestRefused]:
    """403 for each refused host, audited once per reason.

    One key can make up host names without end (2,200 refusals in 16 s): they count on one event
    per key, address and reason (audit_record's aggregate), with a sample of the names.
    """
    assert agent is not None  # only agent keys are bound to hosts; people never reach ingestion

    by_reason: dict[str, list[str]] = {}
    for hostname, reason in sorted(refused.items()):
        by_reason.setdefault(reason, []).append(hostname)
    for reason, hostnames in by_reason.items():
        audit_record(
            action="ingest.refused", actor=Agent(agent), request=request, resource_type="agent_key",
            resource_id=agent.prefix, outcome=AuditEvent.Outcome.DENIED, aggregate=True, aggregate_by=("reason",),
            count=len(hostnames), sample="hostnames", details={"hostnames": hostnames, "scope": agent.scope, "reason": reason},
        )
    return {h: IngestRefused(403, f"This agent key may not report for host {h}.") for h in refused}


def _conflict(agent: AgentKey | None, stored: Snapshot, key: tuple[str, datetime], request) -> IngestRefused:
    other_key = stored.agent_id != (agent.pk if agent else None)
    if agent is not None:
        # One counted event per key and reason however many stored snapshots it replays (a row per snapshot was
        # the replaying key's to multiply); a sample of host@timestamp says which.
        audit_record(
            action="ingest.conflict", actor=Agent(agent), request=request, resource_type="agent_key",
            resource_id=agent.prefix, outcome=AuditEvent.Outcome.DENIED, aggregate=True, aggregate_by=("reason",),
            sample="snapshots", details={"snapshots": [f"{key[0]}@{key[1].isoformat()}"],
                                         "reason": "another key" if other_key else "other content"},
        )
    why = "from another agent key" if other_key else "with other content"
    return IngestRefused(
        409, f"A snapshot of {key[0]} at {key[1]:%Y-%m-%dT%H:%M:%SZ} is already stored {why}; it is never overwritten. "
             "Send a new snapshot with its own timestamp."
    )


def _ingest(payloads: list, agent: AgentKey | None, request=None) -> list[IngestResult | PayloadError | IngestRefused]:
    """Validate, score and store snapshots; each stands or falls alone, all are written in one transaction.

    The same (hostname, timestamp) again, in this batch, in an earlier one, or from a concurrent
    request, answers with the stored snapshot if it came from the same key with the same content,
    and is refused (409) otherwise: what is stored is never overwritten.
    """
    results: list[IngestResult | PayloadError | IngestRefused | None] = [None] * len(payloads)
    valid: list[tuple[int, SnapshotIn]] = []
    for i, payload in enumerate(payloads):
        try:
            valid.append((i, _validate(payload)))
        except PayloadError as exc:
            results[i] = exc
    refused = agent_hosts_refused(agent=agent, hostnames={s.hostname for _, s in valid})
    if refused:
        refusals = _refusals(agent, refused, request)
        for i, snap in valid:
            results[i] = refusals.get(snap.hostname)
        valid = [(i, snap) for i, snap in valid if snap.hostname not in refused]
    existing = _existing_many({(s.hostname, s.timestamp) for _, s in valid})
    unnamed = {s.hostname for _, s in valid if not s.os}
    known_os = dict(Endpoint.objects.filter(hostname__in=unnamed).values_list("hostname", "os")) if unnamed else {}
    fresh: dict[tuple[str, datetime], tuple[int, _Prepared]] = {}
    repeats: list[tuple[int, tuple[str, datetime], str]] = []
    for i, snap in valid:
        key = (snap.hostname, snap.timestamp)
        if key in existing or key in fresh:
            repeats.append((i, key, _digest(snap)))
        else:
            fresh[key] = (i, _prepare(snap, known_os.get(snap.hostname, "")))
    preps = [prep for _, prep in fresh.values()]
    _parents_recall(preps)
    _streak_memory(preps)
    verdicts = observations_score([o for prep in preps for o in prep.observations])
    if preps:
        stored, raced = _retrying_once(lambda: _store(fresh, preps, verdicts, agent))
        for i, result in stored.items():
            results[i] = result
        repeats += [(i, key, fresh[key][1].digest) for i, key in raced]
    if repeats:
        existing.update(_existing_many({key for _, key, _ in repeats if key not in existing}))
        for i, key, digest in repeats:
            stored_snapshot = existing[key]
            same = stored_snapshot.agent_id == (agent.pk if agent else None) and stored_snapshot.digest == digest
            results[i] = (IngestResult(_result_body(stored_snapshot, key[0]), created=False) if same
                          else _conflict(agent, stored_snapshot, key, request))
    return cast("list[IngestResult | PayloadError | IngestRefused]", results)  # every slot is filled by now


def snapshot_ingest(*, payload, agent: AgentKey | None = None, request=None) -> IngestResult:
    """Validate, score and store one snapshot; the same snapshot again returns the stored result.

    Raises PayloadError (400) for bad input and IngestRefused (403, 409); then nothing is stored.
    """
    (result,) = _ingest([payload], agent, request)
    if isinstance(result, (PayloadError, IngestRefused)):
        raise result
    return result


def _item_error(r: PayloadError | IngestRefused) -> dict:
    if isinstance(r, PayloadError):
        return {"error": {"status": 400, "detail": r.detail, "errors": r.errors}}
    return {"error": {"status": r.status, "detail": r.detail, "errors": {}}}


def snapshot_ingest_batch(*, payloads: list, agent: AgentKey | None = None, request=None) -> list[dict]:
    """Each snapshot stands or falls alone; they are scored in one call to the model and written in one transaction.

    A rejected item is {"error": {"status", "detail", "errors"}}, where status is what the
    single-snapshot endpoint would have answered for it (400, 403 or 409).
    """
    return [r.body if isinstance(r, IngestResult) else _item_error(r) for r in _ingest(payloads, agent, request)]


def _reported_os(data: dict) -> str:
    """The OS named in a host report: top level or in a nested host/system object, a string or {"name": ...}."""
    places = [data] + [data[k] for k in ("host_info", "host", "system", "os_info") if isinstance(data.get(k), dict)]
    for place in places:
        for field_name in ("os", "platform", "os_name"):
            value = place.get(field_name)
            if isinstance(value, dict):
                value = value.get("name") or value.get("platform")
            if isinstance(value, str) and value.strip():
                return value
    return ""


def host_report(*, payload, agent: AgentKey | None, request=None) -> dict:
    """A host report (the Sentinel's /ingest/snapshot): only the host's OS is used, so a macOS host is not guessed Linux.

    Its process list (pid and name, no time) is not stored: process snapshots carry that.
    Raises PayloadError (400) or IngestRefused (403); nothing is stored then.
    """
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["a host report must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    raw_host = payload.get("hostname")
    if raw_host is None:
        host_info = payload.get("host_info")
        raw_host = host_info.get("hostname") if isinstance(host_info, dict) else None
    hostname = text_field(raw_host, "hostname", errors, max_length=255, required=True).strip()
    os_raw = text_field(_reported_os(payload), "os", errors, max_length=64)
    if errors:
        raise PayloadError(errors)
    if refused := agent_hosts_refused(agent=agent, hostnames={hostname}):
        raise _refusals(agent, refused, request)[hostname]
    if not os_raw:
        return {"hostname": hostname, "os": None, "used": [], "detail": "No OS named in this report; nothing was used."}
    os_name = guess_os(os_raw)[:32]
    now = timezone.now()
    Endpoint.objects.bulk_create(
        [Endpoint(hostname=hostname, os=os_name, first_seen=now, last_seen=now, last_agent=agent, names_only=True)],
        ignore_conflicts=True,
    )
    Endpoint.objects.filter(hostname=hostname).exclude(os=os_name).update(os=os_name)
    return {"hostname": hostname, "os": os_name, "used": ["os"],
            "detail": "The host's OS was recorded; processes are taken from process snapshots only."}

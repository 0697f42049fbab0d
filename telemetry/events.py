"""Process-start events: what lived between two snapshots, scored and stored like a snapshot's process.

An event is stored as a one-process snapshot: a carrier ``Snapshot`` row (``source="event"``,
timed at the start) and one ``ProcessRecord``. Why not a table of its own: every reader of
process records (the rollups training reads, scoring and re-scoring, alerts and their keys,
triage, the preview, approvals, late history, retention by day and by partition) then treats an
event like any observation without a change, and the carrier's unique constraint over
(host, start time, ``event_key``: the start time, pid and exe digested) makes the same event
sent twice, or by two concurrent requests, one row. A carrier costs one narrow row beside the
record; the readers that mean *snapshots* filter ``source`` (telemetry.models.Snapshot).

What training learns from an event (telemetry/rollups.py): one start is one observation of the
program on that host at that hour, as if one snapshot had seen it, with no CPU or memory (summed
as 0, like a names-only agent's record). Events add nothing to the host's snapshots a day, the
denominator of every share: a program started 10 times a day on a host that sends 288 snapshots
a day has a share of 10/288 on it, as one seen in 10 of them would.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from telemetry.agent_keys import agent_hosts_refused
from telemetry.ingest import IngestRefused, _name_key, _prepare, _record_rows, _records_insert, _refusals, _retrying_once, _slice
from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from telemetry.normalize import guess_os
from telemetry.rollups import rollups_add
from telemetry.scoring import alert_key, observations_score, records_stored
from telemetry.validation import (
    MAX_CMDLINE,
    MAX_EXE,
    MAX_HOSTNAME,
    MAX_NAME,
    MAX_OS,
    MAX_PID,
    MAX_USERNAME,
    PayloadError,
    ProcessIn,
    SnapshotIn,
    _integer,
    _text,
    _type_name,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000  # a request's events (and a Sysmon or ECS request's records)
_HEX = frozenset("0123456789abcdef")


@dataclass(slots=True)
class EventIn:
    hostname: str
    timestamp: datetime  # when the process started
    name: str
    pid: int | None = None
    ppid: int | None = None
    exe: str = ""
    cmdline: str = ""
    username: str = ""
    parent_name: str = ""
    parent_exe: str = ""
    sha256: str = ""
    os: str = ""
    key: str = ""  # the event's identity beside its host: start time, pid and exe (API.md), digested
    digest: str = ""  # what it says: a repeat with another digest is a conflict

    def __post_init__(self) -> None:
        # Once each: they are read at every step of a batch of 1,000.
        started = self.timestamp.isoformat()
        self.key = hashlib.blake2b(f"{started}\x1f{self.pid}\x1f{self.exe}".encode(), digest_size=16).hexdigest()
        content = [self.hostname, started, self.name, self.pid, self.ppid, self.exe, self.cmdline, self.username,
                   self.parent_name, self.parent_exe, self.sha256, self.os]
        self.digest = hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def validate_event(data, *, now: datetime) -> EventIn:
    """One event as API.md has it; PayloadError naming every bad field otherwise."""
    if not isinstance(data, dict):
        raise PayloadError({"non_field_errors": [f"an event must be a JSON object, not {_type_name(data)}"]})
    errors: dict[str, list[str]] = {}

    def text(field: str, max_length: int, required: bool = False) -> str:
        return _text(data.get(field), field, errors, max_length=max_length, required=required).strip()

    event = EventIn(
        hostname=text("hostname", MAX_HOSTNAME, required=True),
        timestamp=parse_timestamp(data.get("timestamp"), "timestamp", errors, now=now,
                                  max_future=timedelta(seconds=settings.MAX_FUTURE_SKEW_SECONDS)) or now,
        name=text("name", MAX_NAME, required=True),
        pid=_integer(data.get("pid"), "pid", errors, maximum=MAX_PID),
        ppid=_integer(data.get("ppid"), "ppid", errors, maximum=MAX_PID),
        exe=text("exe", MAX_EXE), cmdline=_text(data.get("cmdline"), "cmdline", errors, max_length=MAX_CMDLINE),
        username=text("username", MAX_USERNAME), parent_name=text("parent_name", MAX_NAME),
        parent_exe=text("parent_exe", MAX_EXE), sha256=text("sha256", 64).lower(), os=text("os", MAX_OS).lower(),
    )
    if event.sha256 and (len(event.sha256) != 64 or not set(event.sha256) <= _HEX):
        errors.setdefault("sha256", []).append("must be 64 hexadecimal digits (a SHA-256), or left out")
    if errors:
        raise PayloadError(errors)
    return event


def _as_snapshot(event: EventIn, known_os: str) -> SnapshotIn:
    os_name = guess_os(event.os or known_os, [event.name, _basename(event.exe)])
    if not (event.os or known_os) and event.exe[1:3] == ":\\":
        os_name = "windows"  # a drive letter says more than a name without ".exe"
    process = ProcessIn(name=event.name, pid=event.pid, ppid=event.ppid, exe=event.exe, username=event.username,
                        cmdline=event.cmdline)
    return SnapshotIn(hostname=event.hostname, timestamp=event.timestamp, os=os_name, processes=[process])


def _anomalies(host: str, record: dict) -> list[dict]:
    """The event's process as an anomaly, keyed as a snapshot's observation of the same program would be."""
    if not record["flagged"]:
        return []
    reasons = record["reasons"]
    return [{"name": record["name"], "pid": record["pid"], "score": record["score"],
             "reasons": json.loads(reasons) if isinstance(reasons, str) else reasons,
             "key": alert_key(host, record["name_norm"], record["exe_norm"], record["parent_name"], record["script"])}]


def _body(carrier_id: int, host: str, model_number: int | None, record: dict) -> dict:
    return {"event_id": carrier_id, "hostname": host, "model_version": model_number,
            "anomalies": _anomalies(host, record)}


_ANSWER_FIELDS = ("name", "pid", "score", "flagged", "reasons", "name_norm", "exe_norm", "parent_name", "script")


def _stored_body(carrier: Snapshot, host: str) -> dict:
    """The answer an event already stored was given (re-scored since, if it was stored unscored)."""
    record = ProcessRecord.objects.filter(snapshot_id=carrier.pk, observed_at=carrier.timestamp).values(
        *_ANSWER_FIELDS).first() or dict.fromkeys(_ANSWER_FIELDS)
    return _body(carrier.pk, host, carrier.model_number, record)


def _endpoints_touch(events: list[tuple[EventIn, str]], agent: AgentKey | None) -> dict[str, int]:
    """Create the hosts not known yet and move last_seen forward (in hostname order: see
    telemetry.ingest._endpoints_touch). An event says nothing of the host's OS or its agent's
    kind, so a known host keeps both."""
    newest: dict[str, tuple[datetime, str]] = {}
    for event, os_name in events:
        if event.hostname not in newest or event.timestamp > newest[event.hostname][0]:
            newest[event.hostname] = (event.timestamp, os_name)
    ops = connection.ops
    table = ops.quote_name(Endpoint._meta.db_table)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    params: list = []
    for hostname in sorted(newest):
        seen = ops.adapt_datetimefield_value(newest[hostname][0])
        params += [hostname, newest[hostname][1], seen, seen, agent.pk if agent else None, False]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(newest))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (hostname, os, first_seen, last_seen, last_agent_id, names_only) VALUES {values} "
            f"ON CONFLICT (hostname) DO UPDATE SET last_seen = {greatest}({table}.last_seen, EXCLUDED.last_seen), "
            f"last_agent_id = EXCLUDED.last_agent_id RETURNING hostname, id",
            params,
        )
        return dict(cursor.fetchall())


def _carriers_insert(rows: list[tuple]) -> dict[tuple[int, str], int]:
    """Insert carriers, skipping any whose event a concurrent request stored first; {(endpoint_id, event_key): id}."""
    table = connection.ops.quote_name(Snapshot._meta.db_table)
    columns = ("endpoint_id", "timestamp", "received_at", "process_count", "anomaly_count", "model_number", "agent_id",
               "digest", "source", "event_key")
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    out: dict[tuple[int, str], int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 2000):  # SQLite: at most 32766 parameters a statement
            chunk = rows[start:start + 2000]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT DO NOTHING RETURNING endpoint_id, event_key, id",
                [v for row in chunk for v in row])
            out.update({(endpoint_id, key): pk for endpoint_id, key, pk in cursor.fetchall()})
    return out


def _stored(events: list[tuple[int, EventIn]]) -> dict[tuple[str, str], Snapshot]:
    """The carriers already stored for these events, by (hostname, event key), in one query."""
    if not events:
        return {}
    found = Snapshot.objects.filter(
        source=Snapshot.Source.EVENT, endpoint__hostname__in={e.hostname for _, e in events},
        timestamp__in={e.timestamp for _, e in events}, event_key__in={e.key for _, e in events},
    ).select_related("endpoint")
    return {(s.endpoint.hostname, s.event_key): s for s in found}


def _conflict(agent: AgentKey | None, stored: Snapshot, event: EventIn, request) -> IngestRefused:
    other_key = stored.agent_id != (agent.pk if agent else None)
    if agent is not None:
        from telemetry.authentication import Agent

        audit_record(
            action="ingest.conflict", actor=Agent(agent), request=request, resource_type="event", resource_id=stored.pk,
            outcome=AuditEvent.Outcome.DENIED, aggregate=True,
            details={"hostname": event.hostname, "timestamp": event.timestamp.isoformat(), "pid": event.pid,
                     "key": agent.prefix, "reason": "another key" if other_key else "other content"},
        )
    why = "from another agent key" if other_key else "with other content"
    return IngestRefused(
        409, f"The start of pid {event.pid} ({event.exe or event.name}) on {event.hostname} at "
             f"{event.timestamp:%Y-%m-%dT%H:%M:%S.%fZ} is already stored {why}; it is never overwritten.")


def _store(fresh: list[tuple[int, EventIn, SnapshotIn]], preps: list, verdicts, agent: AgentKey | None):
    """Write the fresh events in one transaction; returns ({position: body}, [positions stored meanwhile])."""
    endpoint_ids = _endpoints_touch([(e, snap.os) for _, e, snap in fresh], agent)
    received = timezone.now()
    carriers = _carriers_insert([
        (endpoint_ids[e.hostname], connection.ops.adapt_datetimefield_value(e.timestamp),
         connection.ops.adapt_datetimefield_value(received), 1, int(bool(part.flagged and part.flagged[0])),
         part.model_number, agent.pk if agent else None, e.digest, Snapshot.Source.EVENT, e.key)
        for (_, e, _), part in zip(fresh, (_slice(verdicts, j, 1) for j in range(len(fresh))))])
    bodies: dict[int, dict] = {}
    raced: list[int] = []
    rows: list[dict] = []
    for j, ((i, event, _), prep) in enumerate(zip(fresh, preps)):
        carrier_id = carriers.get((endpoint_ids[event.hostname], event.key))
        if carrier_id is None:
            raced.append(i)
            continue
        part = _slice(verdicts, j, 1)
        (row,) = _record_rows(prep, part, carrier_id, endpoint_ids[event.hostname])
        row["sha256"] = event.sha256
        rows.append(row)
        bodies[i] = _body(carrier_id, event.hostname, part.model_number, row)
    _records_insert(rows)
    rollups_add(rows, [])  # observations, not snapshots: the host's snapshots a day are not touched
    records_stored(rows, {pk: hostname for hostname, pk in endpoint_ids.items()})  # new alerts reach people too
    return bodies, raced


def events_ingest(*, payloads: list, agent: AgentKey | None = None, request=None) -> list[dict]:
    """Validate, score and store process-start events; each stands or falls alone, one result each, in order.

    A result is ``{"event_id", "hostname", "model_version", "anomalies"}`` or ``{"error": {"status",
    "detail", "errors"}}`` with the status a snapshot would have had: 400 bad input, 403 another
    key's host, 409 the same event (host, start, pid, exe) already stored with other content or
    from another key. The same event again answers as it was answered, and is stored once.
    """
    now = timezone.now()
    results: list[dict | None] = [None] * len(payloads)
    valid: list[tuple[int, EventIn]] = []
    for i, payload in enumerate(payloads):
        try:
            valid.append((i, validate_event(payload, now=now)))
        except PayloadError as exc:
            results[i] = _error(400, exc.detail.replace("this snapshot", "this event"), exc.errors)
    refused = agent_hosts_refused(agent=agent, hostnames={e.hostname for _, e in valid})
    if refused:
        refusals = _refusals(agent, refused, request)
        for i, event in valid:
            if event.hostname in refused:
                results[i] = _error(403, refusals[event.hostname].detail)
        valid = [(i, e) for i, e in valid if e.hostname not in refused]
    existing = _stored(valid)
    known_os = dict(Endpoint.objects.filter(hostname__in={e.hostname for _, e in valid}).values_list("hostname", "os"))
    fresh: list[tuple[int, EventIn, SnapshotIn]] = []
    first: dict[tuple[str, str], EventIn] = {}
    repeats: list[tuple[int, EventIn]] = []
    for i, event in valid:
        identity = (event.hostname, event.key)
        if identity in existing or identity in first:
            repeats.append((i, event))
        else:
            first[identity] = event
            fresh.append((i, event, _as_snapshot(event, known_os.get(event.hostname, ""))))
    preps = [_prepare(snap, snap.os) for _, _, snap in fresh]
    for (_, event, snap), prep in zip(fresh, preps):
        # The source names the parent; a one-process "snapshot" cannot.
        parent = event.parent_name or _basename(event.parent_exe)
        prep.parents[0] = prep.observations[0].parent = _name_key(parent, snap.os) if parent else ""
    verdicts = observations_score([p.observations[0] for p in preps])
    if fresh:
        bodies, raced = _retrying_once(lambda: _store(fresh, preps, verdicts, agent))
        for i, body in bodies.items():
            results[i] = body
        repeats += [(i, e) for i, e, _ in fresh if i in raced]
    if repeats:
        existing.update(_stored([(i, e) for i, e in repeats if (e.hostname, e.key) not in existing]))
        for i, event in repeats:
            carrier = existing[(event.hostname, event.key)]
            same = carrier.agent_id == (agent.pk if agent else None) and carrier.digest == event.digest
            if same:
                results[i] = _stored_body(carrier, event.hostname)
            else:
                results[i] = _error(409, _conflict(agent, carrier, event, request).detail)
    return [r if r is not None else _error(500, "not processed") for r in results]


def _error(status: int, detail: str, errors: dict | None = None) -> dict:
    return {"error": {"status": status, "detail": detail, "errors": errors or {}}}


def records_parse(body: bytes) -> list:
    """A JSON array, one JSON object, or NDJSON (a JSON object a line): the records, or PayloadError.

    A line of NDJSON that is not JSON stays in the list as a ``_Unreadable``, refused by position
    with the others used.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError({"non_field_errors": [f"the body is not UTF-8 text (byte {exc.start})"]}) from None
    if not text.strip():
        raise PayloadError({"non_field_errors": ["the body is empty; send a JSON array or NDJSON of records"]})
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    else:
        return whole if isinstance(whole, list) else [whole]
    records: list = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            records.append(_Unreadable(f"line {number} is not JSON ({exc.msg} at column {exc.colno})"))
    return records


@dataclass
class _Unreadable:
    why: str


def records_ingest(*, records: list, source, agent: AgentKey | None = None, request=None) -> tuple[bool, dict]:
    """Sysmon or ECS records (telemetry.event_formats) → events, stored like ``events_ingest``'s.

    Returns (anything used, body): ``{"stored", "skipped", "refused": [{"index", "detail"}], "results"}``;
    ``results`` (and ``stored``) count each record stored now or before (the same event again), with its ``index``. A refused
    record (unreadable, a field that cannot be used, another key's host, a conflict) is not stored.
    """
    from telemetry.event_formats import Refused

    if len(records) > MAX_EVENTS:
        raise PayloadError({"non_field_errors": [
            f"{len(records)} records; at most {MAX_EVENTS} are taken in one request, so split them"]})
    skipped = 0
    refused: list[dict] = []
    converted: list[tuple[int, dict]] = []
    for index, record in enumerate(records):
        try:
            if isinstance(record, _Unreadable):
                raise Refused(record.why)
            if not isinstance(record, dict):
                raise Refused(f"a {source.name} record must be a JSON object, not {_type_name(record)}")
            event = source.convert(record)
        except Refused as exc:
            refused.append({"index": index, "detail": f"Record {index}: {exc}; it was not stored."})
            continue
        if event is None:
            skipped += 1
        else:
            converted.append((index, event))
    results = []
    answers = events_ingest(payloads=[e for _, e in converted], agent=agent, request=request) if converted else []
    for (index, _), answer in zip(converted, answers):
        error = answer.get("error")
        if error is None:
            results.append({"index": index, **answer})
            continue
        named = [f"{source.fields.get(f, f)}: {messages[0]}" for f, messages in error["errors"].items()]
        detail = "; ".join(named) if named else error["detail"]
        refused.append({"index": index, "status": error["status"],
                        "detail": f"Record {index}: {detail.rstrip('.')}; it was not stored."})
    refused.sort(key=lambda r: r["index"])
    return bool(results), {"stored": len(results), "skipped": skipped, "refused": refused, "results": results}

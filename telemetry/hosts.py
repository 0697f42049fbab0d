"""Hosts: what each endpoint is, when the server last heard from it, and whether it has gone silent.

A host is **late** when nothing came from it for LATE_FACTOR times its usual interval. The usual
interval is the median gap between the server's *receipt* times of its last RECENT_SNAPSHOTS
snapshots, not between the times the agent wrote in them: a compromised agent chooses its
timestamps (it could space them a day apart so that a silence of hours looks usual), but not when
its requests reach the server. Gaps under SAME_DELIVERY_SECONDS are one delivery (a batch, a backlog
flushed after an outage) and say nothing about the cadence, so they are left out. The median
keeps one outage from stretching the usual interval. When events (process starts) are stored,
their receipt times join the snapshots' in `_heard`.

Cheap for a fleet: one query reads each host's last RECENT_SNAPSHOTS snapshots through the
(endpoint, timestamp) index, whatever the history's length; the maths is pure and per host.

`open_alerts` is a triage count, which lives above telemetry (axon): it is asked through a seam
(`register_alert_counter`), and is None while nothing is registered.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from django.db import connection
from django.utils import timezone

from telemetry.models import Endpoint, ProcessRecord, Snapshot

RECENT_SNAPSHOTS = 20
LATE_FACTOR = 3
SAME_DELIVERY_SECONDS = 1.0


def usual_interval(received: Sequence[float]) -> float | None:
    """The median gap in seconds between deliveries (receipt times in Unix seconds), or None with fewer than two."""
    times = sorted(received)
    gaps = [b - a for a, b in zip(times, times[1:]) if b - a >= SAME_DELIVERY_SECONDS]
    return statistics.median(gaps) if gaps else None


@dataclass
class Host:
    hostname: str
    os: str
    agent: str | None  # the name of the key that last reported for it, never the key
    names_only: bool
    first_seen: datetime
    last_seen: datetime  # the newest snapshot's own timestamp (the agent's clock)
    last_heard: datetime | None  # when the server last received something from it (its own clock)
    usual_interval_seconds: float | None
    late_since: datetime | None  # when it went late; None while it is not late
    open_alerts: int | None = None
    id: int = 0

    @property
    def late(self) -> bool:
        return self.late_since is not None

    @property
    def usual_interval_text(self) -> str:
        """For people: "every 5 min"; empty while it has not reported twice."""
        seconds = self.usual_interval_seconds
        if seconds is None:
            return ""
        for unit, size in (("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"every {seconds / size:.3g} {unit}"
        return f"every {seconds:.3g} s"

    def json(self) -> dict:
        return {"hostname": self.hostname, "os": self.os, "agent": self.agent, "names_only": self.names_only,
                "first_seen": self.first_seen, "last_seen": self.last_seen, "last_heard": self.last_heard,
                "usual_interval_seconds": self.usual_interval_seconds, "late": self.late, "late_since": self.late_since,
                "open_alerts": self.open_alerts}


class AlertCounter(Protocol):
    def __call__(self, hostnames: list[str]) -> dict[str, int]:
        """The number of open alerts of each of these hosts (hosts without any may be left out)."""


_alert_counter: AlertCounter | None = None


def register_alert_counter(counter: AlertCounter) -> None:
    global _alert_counter
    _alert_counter = counter


# What a host's rhythm is read from: snapshots (not a shipper's bursts of process starts) that an agent key
# delivered. What an operator loads without a key (the demo, a replay, `collect` storing directly) arrives
# at the loader's pace, not the agent's: the demo's two days, loaded in seconds, made every host "late"
# a few seconds after a fresh start.
KEYED_SNAPSHOT = "{t}.source = 'snapshot' AND {t}.agent_id IS NOT NULL"


def _heard(endpoint_ids: list[int] | None) -> dict[int, list[float]]:
    """When (Unix seconds) the server received each host's last RECENT_SNAPSHOTS snapshots (of these hosts;
    None: all), in one query. Snapshots only: a shipper's process-start events come in bursts that say
    nothing of the agent's rhythm (a host that only sends events is not judged late).

    Host by host through the (endpoint, timestamp) index, never a scan of the history. The join order
    is forced: left to the planners, both read every snapshot and judged each against its host's
    cut-off (PostgreSQL, 1,000 hosts of 300 snapshots: 31 s; SQLite: 1.2 s). Times come as numbers:
    20,000 model instances cost 2 s of Python.
    """
    snapshots, endpoints = Snapshot._meta.db_table, Endpoint._meta.db_table
    where, params = "", []
    if endpoint_ids is not None:
        if not endpoint_ids:
            return {}
        where = f"WHERE e.id IN ({', '.join(['%s'] * len(endpoint_ids))})"
        params = list(endpoint_ids)
    if connection.vendor == "postgresql":
        sql = (f"SELECT e.id, EXTRACT(EPOCH FROM r.received_at)::float8 FROM {endpoints} e CROSS JOIN LATERAL "
               f"(SELECT s.received_at FROM {snapshots} s WHERE s.endpoint_id = e.id AND {KEYED_SNAPSHOT.format(t='s')} "
               f"ORDER BY s.timestamp DESC LIMIT {RECENT_SNAPSHOTS}) r {where}")
    else:
        # No LATERAL in SQLite: each host's cut-off (its RECENT_SNAPSHOTS-th newest timestamp) once, then
        # its snapshots from there; CROSS JOIN makes SQLite loop over the hosts outside.
        params.insert(0, connection.ops.adapt_datetimefield_value(datetime(1, 1, 2, tzinfo=UTC)))
        sql = (f"WITH cut AS MATERIALIZED (SELECT e.id AS endpoint_id, COALESCE((SELECT n.timestamp FROM {snapshots} n "
               f"WHERE n.endpoint_id = e.id AND {KEYED_SNAPSHOT.format(t='n')} ORDER BY n.timestamp DESC "
               f"LIMIT 1 OFFSET {RECENT_SNAPSHOTS - 1}), %s) AS since "
               f"FROM {endpoints} e {where}) "
               f"SELECT s.endpoint_id, (julianday(s.received_at) - 2440587.5) * 86400.0 FROM cut CROSS JOIN {snapshots} s "
               f"WHERE s.endpoint_id = cut.endpoint_id AND s.timestamp >= cut.since AND {KEYED_SNAPSHOT.format(t='s')}")
    heard: dict[int, list[float]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for endpoint_id, received in cursor.fetchall():
            # To the millisecond: SQLite's julianday carries a few microseconds of rounding.
            heard.setdefault(endpoint_id, []).append(round(received, 3))
    return heard


def _hosts(endpoints, *, now: datetime, every: bool = False, alerts: bool = True) -> list[Host]:
    """The hosts of `endpoints` (`every`: that is all of them, so the query need not list them) as of `now`,
    with their open alerts counted when `alerts`."""
    rows = list(endpoints.select_related("last_agent").order_by("hostname"))
    heard = _heard(None if every else [e.pk for e in rows])
    hosts = []
    for e in rows:
        received = heard.get(e.pk, [])
        usual = usual_interval(received)
        last_heard = datetime.fromtimestamp(max(received), UTC) if received else None
        late_since = None
        if usual is not None and last_heard is not None:
            due = last_heard + timedelta(seconds=LATE_FACTOR * usual)
            late_since = due if due < now else None
        hosts.append(Host(
            id=e.pk, hostname=e.hostname, os=e.os, agent=e.last_agent.name if e.last_agent else None,
            names_only=e.names_only, first_seen=e.first_seen, last_seen=e.last_seen, last_heard=last_heard,
            usual_interval_seconds=round(usual, 1) if usual is not None else None, late_since=late_since,
        ))
    if alerts and _alert_counter is not None and hosts:
        counts = _alert_counter([h.hostname for h in hosts])
        for h in hosts:
            h.open_alerts = counts.get(h.hostname, 0)
    return hosts


def hosts_list(*, late: bool | None = None, q: str = "", now: datetime | None = None, alerts: bool = True) -> list[Host]:
    """Every host (or those whose name contains `q`), by name; only the late or only the others when `late` is given.
    Without `alerts`, open_alerts stays None (counting them reads every open flag)."""
    endpoints = Endpoint.objects.filter(hostname__icontains=q) if q else Endpoint.objects.all()
    hosts = _hosts(endpoints, now=now or timezone.now(), every=not q, alerts=alerts)
    return hosts if late is None else [h for h in hosts if h.late == late]


def hosts_late(*, now: datetime | None = None) -> list[Host]:
    """The hosts that have gone silent, the longest silent first; `late_since` says when each went late.

    For a notifier: it can remember which it has told of and say `host.late` / `host.back` on the change.
    """
    late = hosts_list(late=True, now=now, alerts=False)
    return sorted(late, key=lambda h: (h.late_since, h.hostname))


def host_get(*, hostname: str, now: datetime | None = None) -> Host | None:
    found = _hosts(Endpoint.objects.filter(hostname=hostname), now=now or timezone.now())
    return found[0] if found else None


def host_last_snapshot(*, host: Host) -> dict | None:
    """The host's newest snapshot (by its timestamp) with its processes, in the order the agent listed them."""
    snapshot = Snapshot.objects.filter(endpoint_id=host.id, source=Snapshot.Source.SNAPSHOT).order_by("-timestamp").first()
    if snapshot is None:
        return None
    # observed_at is the snapshot's timestamp: on PostgreSQL it picks the one day's partition.
    records = ProcessRecord.objects.filter(snapshot_id=snapshot.pk, observed_at=snapshot.timestamp).order_by("index")
    return {
        "timestamp": snapshot.timestamp, "received_at": snapshot.received_at, "model_version": snapshot.model_number,
        "processes": [
            {"name": r.name, "pid": r.pid, "ppid": r.ppid, "exe": r.exe, "user": r.username, "cmdline": r.cmdline,
             "parent": r.parent_name, "flagged": r.flagged, "score": r.score, "reasons": r.reasons}
            for r in records
        ],
    }


def host_recent_starts(*, host: Host, limit: int = 50) -> list[dict]:
    """The host's newest process-start events, each with whether a later snapshot still saw it running (one
    that no snapshot saw lived less than the snapshot interval: the sub-second tool a snapshot misses)."""
    starts = list(ProcessRecord.objects.filter(endpoint_id=host.id, snapshot__source=Snapshot.Source.EVENT)
                  .order_by("-observed_at", "-id")[:limit])
    if not starts:
        return []
    seen = set(ProcessRecord.objects.filter(
        endpoint_id=host.id, snapshot__source=Snapshot.Source.SNAPSHOT, observed_at__gte=min(r.observed_at for r in starts),
        pid__in={r.pid for r in starts if r.pid is not None}).values_list("pid", "name_norm"))
    return [{"timestamp": r.observed_at, "name": r.name, "pid": r.pid, "parent": r.parent_name, "exe": r.exe,
             "user": r.username, "cmdline": r.cmdline, "sha256": r.sha256, "flagged": r.flagged, "reasons": r.reasons,
             "in_snapshot": (r.pid, r.name_norm) in seen} for r in starts]


def hosts_watch(*, now: datetime | None = None) -> tuple[list[str], list[str]]:
    """Say once when a host goes late and once when it is heard from again: (went late, came back).

    What was said is the audit log's `host.late` / `host.back` events, so it survives restarts and
    every change is visible there; each change is also a notification (audit.notify).
    """
    from audit.models import AuditEvent
    from audit.notify import emit
    from audit.services import audit_record

    now = now or timezone.now()
    late = {h.hostname: h for h in hosts_late(now=now)}
    said: dict[str, str] = {}
    for hostname, action in (AuditEvent.objects.filter(action__in=("host.late", "host.back"), resource_type="host")
                             .order_by("timestamp", "id").values_list("resource_id", "action")):
        said[hostname] = action  # the newest wins
    marked = {h for h, action in said.items() if action == "host.late"}
    went = sorted(set(late) - marked)
    back = sorted(h for h in marked - set(late) if Endpoint.objects.filter(hostname=h).exists())
    for hostname in went:
        h = late[hostname]
        silent = int((now - h.last_heard).total_seconds()) if h.last_heard else None
        details = {"last_heard": h.last_heard.isoformat() if h.last_heard else None, "silent_seconds": silent,
                   "usual_interval_seconds": h.usual_interval_seconds}
        audit_record(action="host.late", resource_type="host", resource_id=hostname, details=details)
        emit("host.late", severity="high", host=hostname, url=f"/hosts/{hostname}/", details=details,
             summary=f"{hostname} has gone silent: nothing received for {silent // 60 if silent else '?'} minutes, "
                     f"against its usual {round(h.usual_interval_seconds or 0)} s (an agent stopped, or stopped by someone)")
    for hostname in back:
        audit_record(action="host.back", resource_type="host", resource_id=hostname)
        emit("host.back", severity="low", host=hostname, url=f"/hosts/{hostname}/",
             summary=f"{hostname} is reporting again")
    return went, back

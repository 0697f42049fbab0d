"""Axon's reads: flagged records grouped into alerts, the alerts list and detail, records as the model
judges them, and the model's status. Nothing here writes."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from audit.actors import InvalidInput
from axon.detector.risk import SPREADING_HOSTS, Candidate, Fleet, assess
from axon.detector.severity import severity
from axon.models import Alert, AlertChange, Approval, ModelVersion, TrainingRun
from axon.scoring import model_cache
from telemetry.models import ProcessRecord
from telemetry.normalize import normalize_exe
from telemetry.scoring import Observation
from voltaxe.views import worker_alive

Status = TrainingRun.Status

exe_key = lru_cache(maxsize=65536)(normalize_exe)


def approval_key(hostname: str, name: str, exe: str, parent: str, script: str | None = "") -> str:
    """The opaque key of one approvable thing: a program (normalized name and path) under a parent on a host,
    with the script an interpreter ran. Without a script the key is what it was before scripts counted,
    so existing alerts' triage and older approvals keep their keys."""
    parts = (hostname, name, exe, parent) + ((script,) if script else ())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def flagged_candidates(records) -> list[Candidate]:
    """Group flagged ProcessRecords by approval key, judge each group's risk, attach its triage."""
    groups: dict[tuple, Candidate] = {}
    cpu_total: dict[tuple, tuple[float, int]] = {}
    rows = records.order_by().values_list(
        "endpoint__hostname", "name_norm", "exe_norm", "parent_name", "script", "name", "exe", "username", "observed_at",
        "score", "reasons", "cpu_percent", "id")
    for host, name_norm, exe_norm, parent, script, name, exe, user, seen, score, reasons, cpu, pk in rows.iterator(
            chunk_size=5000):
        group = (host, name_norm, exe_norm, parent, script)
        c = groups.get(group)
        if c is None:
            c = groups[group] = Candidate(
                key=approval_key(host, name_norm, exe_norm, parent, script), hostname=host, name_norm=name_norm,
                exe_norm=exe_norm, parent=parent, script=script, name=name, exe=exe, user=user, first_seen=seen,
                last_seen=seen, max_score=score, reasons=list(reasons or []))
        c.observations += 1
        c.first_seen, c.last_seen, c.newest_id = min(c.first_seen, seen), max(c.last_seen, seen), max(c.newest_id, pk)
        if score is not None and (c.max_score is None or score > c.max_score):
            c.max_score, c.reasons = score, list(reasons or [])
        if cpu is not None:
            total, n = cpu_total.get(group, (0.0, 0))
            cpu_total[group] = (total + cpu, n + 1)
    hosts_by_name: dict[str, set] = {}
    for c in groups.values():
        hosts_by_name.setdefault(c.name_norm, set()).add(c.hostname)
    fleet = Fleet(spreading=tuple(sorted(n for n, hosts in hosts_by_name.items() if len(hosts) >= SPREADING_HOSTS)))
    triage = {a.key: a for a in Alert.objects.filter(key__in=[c.key for c in groups.values()])} if groups else {}
    for group, c in groups.items():
        total, n = cpu_total.get(group, (0.0, 0))
        c.hosts, c.cpu = len(hosts_by_name[c.name_norm]), total / n if n else None
        c.risk, c.risk_reasons = assess(c, fleet)
        if c.key in triage:
            t = triage[c.key]
            c.status, c.note, c.updated_by, c.updated_at = t.status, t.note, t.updated_by_name, t.updated_at
            # Closing hides what was seen, not what comes. An alert closed before arrivals were recorded
            # (seen_up_to empty) goes by the timestamps instead.
            if t.status == Alert.Status.CLOSED and (
                    c.newest_id > t.seen_up_to if t.seen_up_to is not None else bool(c.last_seen and c.last_seen > t.updated_at)):
                c.status, c.reopened = Alert.Status.OPEN, True
    return list(groups.values())


# What observations reads of a record: its fields and its host's name and OS, annotated so
# that model instances and plain named rows (values_list(named=True)) both carry them.
OBSERVED = ("name_norm", "exe_norm", "parent_name", "pid", "ppid", "username", "hour", "cpu_percent", "memory_rss",
             "script", "args_norm", "cpu_streak")
HOST = {"host": F("endpoint__hostname"), "host_os": F("endpoint__os")}


def observations(records) -> list[Observation]:
    """Records (annotated with ``HOST``) as the model judges them."""
    return [
        # Stored exe_norm folded again, as window_aggregate does: old rows meet the current folding.
        Observation(host=r.host, os=r.host_os, name=r.name_norm,
                    exe=exe_key(r.exe_norm, r.host_os or "linux"), parent=r.parent_name,
                    user=r.username, hour=r.hour, cpu=r.cpu_percent,
                    mem_mib=None if r.memory_rss is None else r.memory_rss / 1048576, script=r.script, args=r.args_norm,
                    names_only=r.pid is None and r.ppid is None and not r.exe_norm and not r.username,
                    prior_streak=max(0, r.cpu_streak - 1))  # judged again with the memory it was judged with
        for r in records
    ]


ALERT_ORDERINGS = ("severity", "-last_seen", "-count", "hostname")
ALERT_STATUSES = (*Alert.Status.values, "all")
MAX_FILTER_TEXT = 255


@dataclass(frozen=True)
class AlertQuery:
    """What the alerts list is filtered and ordered by: the API's query parameters, and the page's."""

    status: str = "open"  # one of Alert.Status, "all", or "" for every status but closed (the Live page)
    hostname: str = ""
    risk: str = ""  # "", "low" or "high"
    q: str = ""  # a piece of the name, path, parent, user or script
    since: datetime | None = None  # seen at or after
    until: datetime | None = None  # seen at or before
    ordering: str = "severity"

    @classmethod
    def from_params(cls, params, **given) -> AlertQuery:
        """From a query string; an unknown or malformed value is InvalidInput naming the parameter."""
        def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
            value = params.get(name) or default
            if value not in allowed:
                raise InvalidInput(f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}.",
                                   {name: [f"unknown value: {value[:40]}"]})
            return value

        def text(name: str) -> str:
            value = (params.get(name) or "").strip()
            if len(value) > MAX_FILTER_TEXT:
                raise InvalidInput(f"{name} must be at most {MAX_FILTER_TEXT} characters.", {name: ["too long"]})
            return value

        values = {
            "status": choice("status", ALERT_STATUSES, "open"), "hostname": text("hostname"),
            "risk": choice("risk", ("", "low", "high"), ""), "q": text("q"),
            "since": _query_time(params.get("since"), "since"), "until": _query_time(params.get("until"), "until"),
            "ordering": choice("ordering", ALERT_ORDERINGS, "severity"),
        }
        return cls(**{**values, **given})

    def matches(self, c: Candidate) -> bool:
        if self.status == "" and c.status == Alert.Status.CLOSED or self.status not in ("", "all", c.status):
            return False
        if self.hostname and c.hostname != self.hostname or self.risk and c.risk != self.risk:
            return False
        if self.since and not (c.last_seen and c.last_seen >= self.since):
            return False
        if self.until and not (c.first_seen and c.first_seen <= self.until):
            return False
        needle = self.q.lower()
        return not needle or any(needle in (text or "").lower() for text in (c.name, c.exe, c.parent, c.user, c.script))


def _query_time(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 time, in UTC; naive is taken as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))  # a '+' arrives as a space
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{name} must be an RFC 3339 time such as 2026-11-26T09:00:00Z; got {value[:40]!r}.",
                           {name: ["not a time"]}) from None


def _open_alerts() -> list[Candidate]:
    """Every alert with open flags, each with its severity; the fleet is judged whole, whatever is filtered after."""
    alerts = flagged_candidates(ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN))
    active = ModelVersion.objects.filter(is_active=True).only("metrics").first()
    threshold = active.metrics.get("threshold") if active is not None else None
    now = timezone.now()
    for c in alerts:
        judged = severity(risk=c.risk, risk_reasons=c.risk_reasons, reasons=list(c.reasons), score=c.max_score,
                          threshold=threshold, hosts=c.hosts, last_seen=c.last_seen, now=now)
        c.severity, c.severity_reasons, c.severity_rank = judged.level, judged.reasons, judged.rank
    return alerts


_ORDER = {
    # Open ones first: what still needs a person; then worst first.
    "severity": lambda c: (c.status != Alert.Status.OPEN, c.severity_rank, c.key),
    "-last_seen": lambda c: (-(c.last_seen.timestamp() if c.last_seen else 0), c.key),
    "-count": lambda c: (-c.observations, c.key),
    "hostname": lambda c: (c.hostname, c.name.lower(), c.key),
}


def alerts_search(*, query: AlertQuery, offset: int = 0, limit: int = 50) -> tuple[list[Candidate], int]:
    """Alerts grouped by approval key, filtered and ordered by `query`: (this page, how many match in all)."""
    alerts = sorted((c for c in _open_alerts() if query.matches(c)), key=_ORDER[query.ordering])
    return alerts[offset:offset + limit], len(alerts)


def alerts_list(*, status: str = "", hostname: str = "", offset: int = 0, limit: int = 50) -> tuple[list[Candidate], bool]:
    """Alerts worst first; every status but closed by default ("all" for every one). Returns (page, more)."""
    page, total = alerts_search(query=AlertQuery(status=status, hostname=hostname), offset=offset, limit=limit)
    return page, offset + limit < total


def alerts_overview(*, limit: int = 50) -> dict:
    """The Live page's table (worst first, every status but closed) and the counts its cards show, from one
    grouping: the cards count what the table lists (alert groups), observations second."""
    alerts = _open_alerts()
    listed = sorted((c for c in alerts if c.status != Alert.Status.CLOSED), key=_ORDER["severity"])
    open_ = [c for c in alerts if c.status == Alert.Status.OPEN]
    return {"page": listed[:limit], "more": len(listed) > limit,
            "by_status": dict(Counter(c.status for c in alerts)), "open": len(open_),
            "open_observations": sum(c.observations for c in open_)}


def alert_detail(*, key: str, offset: int = 0, limit: int = 100) -> dict | None:
    """One alert with its observations (newest first, paged), triage history and covering approval; None if unknown."""
    c = next((a for a in _open_alerts() if a.key == key), None)
    status = ProcessRecord.Status.OPEN
    if c is None:  # approved since (no open flags left): still findable, with the approval that covers it
        c, status = _approved_alert(key), ProcessRecord.Status.APPROVED
        if c is None:
            return None
    records = ProcessRecord.objects.filter(
        status=status, endpoint__hostname=c.hostname, name_norm=c.name_norm,
        exe_norm=c.exe_norm, parent_name=c.parent, script=c.script).order_by("-observed_at", "-id")
    if status == ProcessRecord.Status.OPEN:
        records = records.filter(flagged=True)
    page = list(records.values("observed_at", "pid", "ppid", "parent_name", "cmdline", "cpu_percent", "memory_rss",
                               "model_number", "snapshot__source")[offset:offset + limit + 1])
    approval = Approval.objects.filter(hostname=c.hostname, name=c.name_norm, exe=c.exe_norm, parent=c.parent).filter(
        Q(script=c.script) | Q(script__isnull=True)).first()
    return {
        "alert": c,
        "observations": [{
            "timestamp": r["observed_at"], "pid": r["pid"], "ppid": r["ppid"], "parent": r["parent_name"],
            "cmdline": r["cmdline"], "cpu_percent": r["cpu_percent"], "memory_rss": r["memory_rss"],
            "model_version": r["model_number"], "source": r["snapshot__source"],
        } for r in page[:limit]],
        "more": len(page) > limit,
        "history": list(AlertChange.objects.filter(key=key)),
        "approval": approval,
    }


def _approved_alert(key: str) -> Candidate | None:
    """The alert of an approved key, judged from the observations the approval covered."""
    for a in Approval.objects.all().iterator():
        if a.script is not None and approval_key(a.hostname, a.name, a.exe, a.parent, a.script) == key:
            # Flagged or not: the model that learned it may have re-scored them since.
            records = ProcessRecord.objects.filter(
                status=ProcessRecord.Status.APPROVED, endpoint__hostname=a.hostname, name_norm=a.name,
                exe_norm=a.exe, parent_name=a.parent, script=a.script)
            return next(iter(flagged_candidates(records)), None)
    return None


def retrain_estimate_seconds() -> int:
    """How long a run takes, from the last few that finished (20 s before there are any); cached briefly."""
    return cache.get_or_set("axon:retrain-estimate", _estimate, 30) or 20


def _estimate() -> int:
    recent = list(
        TrainingRun.objects.filter(status=Status.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")[:5].values_list("started_at", "finished_at")
    )
    if not recent:
        return 20
    seconds = sorted((end - start).total_seconds() for start, end in recent if start and end)[len(recent) // 2]
    return max(5, int(round(seconds + 2)))


def axon_status() -> dict:
    """What the page and the status API show. A read: runs whose worker died are ended by the
    maintenance task (every minute) and by the next press, never by a GET."""
    active = ModelVersion.objects.filter(is_active=True).first()
    current = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    model_cache.get()  # refresh, so serving_version and model_error below are current
    return {
        "active": active,
        "current_run": current,
        "worker_alive": worker_alive(),
        "serving_version": model_cache.version,
        "model_error": model_cache.error,
        "last_run": TrainingRun.objects.first(),
        "estimate_seconds": retrain_estimate_seconds(),
    }

"""Axon's reads: flagged records grouped into alerts, the alerts list and detail, records as the model
judges them, and the model's status. Nothing here writes."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, F, Max, Min, Q, Window
from django.db.models.functions import RowNumber
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


GROUP = ("endpoint_id", "name_norm", "exe_norm", "parent_name", "script")


def flagged_candidates(records, *, floods: dict[int, Flood] | None = None) -> list[Candidate]:
    """Group flagged ProcessRecords by approval key, judge each group's risk, attach its triage.

    The grouping is the database's: one row per group comes back, whatever the number of records (a program
    flagged every minute on a thousand hosts is a thousand rows, not a million). Records of the hosts in
    `floods` are left out: each flood is one line of its own (`host_floods`), not one per name.
    """
    if floods:
        records = records.exclude(endpoint_id__in=list(floods))
    part = [F(f) for f in GROUP]

    def over(expr, order_by=None):
        return Window(expr, partition_by=part, order_by=order_by)

    rows = (records.order_by().annotate(
        g_n=over(Count("id")), g_first=over(Min("observed_at")), g_last=over(Max("observed_at")),
        g_newest=over(Max("id")), g_cpu=over(Avg("cpu_percent")),
        # The group's worst observation speaks for it: its score, reasons, and the name, path and user it ran as.
        g_rank=over(RowNumber(), [F("score").desc(nulls_last=True), F("id").desc()]))
        .filter(g_rank=1)
        .values_list("endpoint__hostname", "name_norm", "exe_norm", "parent_name", "script", "name", "exe", "username",
                     "score", "reasons", "g_n", "g_first", "g_last", "g_newest", "g_cpu"))
    groups = [
        Candidate(key=approval_key(host, name_norm, exe_norm, parent, script), hostname=host, name_norm=name_norm,
                  exe_norm=exe_norm, parent=parent, script=script, name=name, exe=exe, user=user, max_score=score,
                  reasons=list(reasons or []), observations=n, first_seen=first, last_seen=last, newest_id=newest, cpu=cpu)
        for host, name_norm, exe_norm, parent, script, name, exe, user, score, reasons, n, first, last, newest, cpu in rows]
    hosts_by_name: dict[str, set] = {}
    for c in groups:
        hosts_by_name.setdefault(c.name_norm, set()).add(c.hostname)
    fleet = Fleet(spreading=tuple(sorted(n for n, hosts in hosts_by_name.items() if len(hosts) >= SPREADING_HOSTS)))
    triage = {a.key: a for a in Alert.objects.filter(key__in=[c.key for c in groups])} if groups else {}
    for c in groups:
        c.hosts = len(hosts_by_name[c.name_norm])
        c.risk, c.risk_reasons = assess(c, fleet)
        if c.key in triage:
            t = triage[c.key]
            c.status, c.note, c.updated_by, c.updated_at = t.status, t.note, t.updated_by_name, t.updated_at
            # Closing hides what was seen, not what comes. An alert closed before arrivals were recorded
            # (seen_up_to empty) goes by the timestamps instead.
            if t.status == Alert.Status.CLOSED and (
                    c.newest_id > t.seen_up_to if t.seen_up_to is not None else bool(c.last_seen and c.last_seen > t.updated_at)):
                c.status, c.reopened = Alert.Status.OPEN, True
    return groups


@dataclass
class Flood:
    """One host that put more new programs in front of people than one host may: one line, itself an alert.

    Its key is triaged like an alert's (closing it hides the line until the host is flagged again); its
    programs stay flagged and are listed one by one when someone asks for the host by name.
    """

    hostname: str
    programs: int  # alert groups (approval keys)
    observations: int
    first_seen: datetime | None
    last_seen: datetime | None
    arrived_seconds: float  # from the first of its records to arrive to the last, by the server's clock
    newest_id: int = 0
    status: str = "open"
    note: str = ""
    reopened: bool = False

    @property
    def key(self) -> str:
        return flood_key(self.hostname)

    @property
    def summary(self) -> str:
        return (f"{self.hostname}: {self.programs:,} new programs ({self.observations:,} observations) "
                f"arrived in {span_words(self.arrived_seconds)}: a flood")


def flood_key(hostname: str) -> str:
    """A flood's alert key; never an approval key (those hash four or five parts, this one two)."""
    return hashlib.sha256(f"flood\x1f{hostname}".encode()).hexdigest()[:24]


def span_words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = max(1, round(seconds))
    return f"{n} second{'s' if n != 1 else ''}"


def host_floods(records, *, budget: int | None = None, hostname: str = "") -> dict[int, Flood]:
    """The hosts with more than `budget` (HOST_NEW_PROGRAMS_BUDGET) groups among `records`, by endpoint id.

    Counted in the database (one row per host comes back), so a host with 155,000 new names costs one
    aggregate, not 155,000 candidates; and kept while the records stay as they are (the same count and newest
    id), so the page, its poll and the preview do not count the same flood again every few seconds.
    `hostname`: that host is never a flood here (someone asked for it by name).
    """
    budget = settings.HOST_NEW_PROGRAMS_BUDGET if budget is None else budget
    records = records.order_by()
    inner = records.values(*GROUP).annotate(n=Count("id"))
    sql, params = inner.query.sql_with_params()
    state = records.aggregate(n=Count("id"), top=Max("id"))
    key = "axon:floods:" + hashlib.sha256(repr((sql, params, budget, state)).encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        found = _floods_count(records, sql, params, budget)
        cache.set(key, found, 300)
    floods = {endpoint: Flood(**fields) for endpoint, fields in found.items() if fields["hostname"] != hostname}
    triage = {a.key: a for a in Alert.objects.filter(key__in=[f.key for f in floods.values()])}
    for f in floods.values():
        if (t := triage.get(f.key)) is not None:
            f.status, f.note = t.status, t.note
            if t.status == Alert.Status.CLOSED and f.newest_id > (t.seen_up_to or 0):
                f.status, f.reopened = Alert.Status.OPEN, True
    return floods


def _floods_count(records, sql: str, params, budget: int) -> dict[int, dict]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT endpoint_id, COUNT(*), SUM(n) FROM ({sql}) groups GROUP BY endpoint_id "
                       "HAVING COUNT(*) > %s", (*params, budget))
        counted = {endpoint: (programs, observations) for endpoint, programs, observations in cursor.fetchall()}
    if not counted:
        return {}
    spans = (records.filter(endpoint_id__in=list(counted)).values("endpoint_id")
             .annotate(host=Min("endpoint__hostname"), first=Min("observed_at"), last=Max("observed_at"),
                       newest=Max("id"), came=Min("snapshot__received_at"), went=Max("snapshot__received_at")))
    return {s["endpoint_id"]: {
        "hostname": s["host"], "programs": counted[s["endpoint_id"]][0], "observations": int(counted[s["endpoint_id"]][1]),
        "first_seen": s["first"], "last_seen": s["last"], "newest_id": s["newest"],
        "arrived_seconds": (s["went"] - s["came"]).total_seconds() if s["came"] and s["went"] else 0.0}
        for s in spans}


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

    def matches_flood(self, f: Flood) -> bool:
        """A flood is high risk, and its text is its host's name."""
        if self.status == "" and f.status == Alert.Status.CLOSED or self.status not in ("", "all", f.status):
            return False
        if self.hostname and f.hostname != self.hostname or self.risk == "low":
            return False
        if self.since and not (f.last_seen and f.last_seen >= self.since):
            return False
        if self.until and not (f.first_seen and f.first_seen <= self.until):
            return False
        return not self.q or self.q.lower() in f.hostname.lower()


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


def _open_alerts(*, hostname: str = "") -> tuple[list[Candidate], list[Flood]]:
    """Every alert with open flags, each with its severity, and the floods (one line a host); the fleet is judged
    whole, whatever is filtered after. `hostname`: that host is listed alert by alert even if it floods."""
    records = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN)
    floods = host_floods(records, hostname=hostname)
    alerts = flagged_candidates(records, floods=floods)
    active = ModelVersion.objects.filter(is_active=True).only("metrics").first()
    threshold = active.metrics.get("threshold") if active is not None else None
    now = timezone.now()
    for c in alerts:
        judged = severity(risk=c.risk, risk_reasons=c.risk_reasons, reasons=list(c.reasons), score=c.max_score,
                          threshold=threshold, hosts=c.hosts, last_seen=c.last_seen, now=now)
        c.severity, c.severity_reasons, c.severity_rank = judged.level, judged.reasons, judged.rank
    return alerts, sorted(floods.values(), key=lambda f: (-f.programs, f.hostname))


_ORDER = {
    # Open ones first: what still needs a person; then worst first.
    "severity": lambda c: (c.status != Alert.Status.OPEN, c.severity_rank, c.key),
    "-last_seen": lambda c: (-(c.last_seen.timestamp() if c.last_seen else 0), c.key),
    "-count": lambda c: (-c.observations, c.key),
    "hostname": lambda c: (c.hostname, c.name.lower(), c.key),
}


def alerts_search(*, query: AlertQuery, offset: int = 0, limit: int = 50) -> tuple[list[Candidate], int, list[Flood]]:
    """Alerts grouped by approval key, filtered and ordered by `query`: (this page, how many match in all, the
    floods that match: each one line, listed before every page)."""
    alerts, floods = _open_alerts(hostname=query.hostname)
    found = sorted((c for c in alerts if query.matches(c)), key=_ORDER[query.ordering])
    return found[offset:offset + limit], len(found), [f for f in floods if query.matches_flood(f)]


def alerts_list(*, status: str = "", hostname: str = "", offset: int = 0, limit: int = 50) -> tuple[list[Candidate], bool]:
    """Alerts worst first; every status but closed by default ("all" for every one). Returns (page, more)."""
    page, total, _ = alerts_search(query=AlertQuery(status=status, hostname=hostname), offset=offset, limit=limit)
    return page, offset + limit < total


def alerts_overview(*, limit: int = 50) -> dict:
    """The Live page's table (floods, then alerts worst first, every status but closed) and the counts its cards
    show, from one grouping: the cards count what the table lists (alert groups, a flood's each), observations second."""
    alerts, floods = _open_alerts()
    listed = sorted((c for c in alerts if c.status != Alert.Status.CLOSED), key=_ORDER["severity"])
    open_ = [c for c in alerts if c.status == Alert.Status.OPEN]
    open_floods = [f for f in floods if f.status == Alert.Status.OPEN]
    return {"page": listed[:limit], "more": len(listed) > limit,
            "floods": [f for f in floods if f.status != Alert.Status.CLOSED],
            "by_status": dict(Counter(c.status for c in alerts)), "open": len(open_) + sum(f.programs for f in open_floods),
            "open_observations": sum(c.observations for c in open_) + sum(f.observations for f in open_floods)}


def alert_detail(*, key: str, offset: int = 0, limit: int = 100) -> dict | None:
    """One alert with its observations (newest first, paged), triage history and covering approval; None if unknown."""
    alerts, floods = _open_alerts()
    c = next((a for a in alerts if a.key == key), None)
    for flood in floods if c is None else ():  # one of a flood's programs: judged as its host's own list judges it
        c = next((a for a in _open_alerts(hostname=flood.hostname)[0] if a.key == key), None)
        if c is not None:
            break
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

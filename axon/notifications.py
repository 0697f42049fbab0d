"""What axon tells people (audit.notify): new alert groups, presses, runs, activations, revocations.

At ingestion, `records_stored` (telemetry's seam) only groups the flagged rows it is handed,
in memory, and leaves one task for after the commit; the worker (`alerts_notify`) then decides
what is news: a group (approval key) flagged for the first time is `alert.new`, or
`alert.spread` when the same program was flagged on another host before; a group flagged
before is not news (storm control counts the repeats of what was just sent).
"""
from __future__ import annotations

from urllib.parse import quote

from audit import notify
from audit.notifications.services import messages_dispatch
from axon.detector.risk import HIGH
from axon.models import TrainingRun
from axon.selectors import Flood, approval_key, flagged_candidates, host_floods
from telemetry.models import ProcessRecord


def alert_severity(risk: str) -> str:
    """One place until alerts carry their own severity (issue 20): high risk is high, any other flag medium."""
    return "high" if risk == HIGH else "medium"


# --- ingestion -----------------------------------------------------------------------------


def records_stored(rows: list[dict], hostnames: dict[int, str]) -> None:
    groups: dict[str, dict] = {}
    for row in rows:
        if not row["flagged"]:
            continue
        host = hostnames[row["endpoint_id"]]
        key = approval_key(host, row["name_norm"], row["exe_norm"], row["parent_name"], row["script"])
        group = groups.get(key)
        if group is None:
            groups[key] = {"key": key, "host": host, "snapshot_id": row["snapshot_id"], "name_norm": row["name_norm"],
                           "exe_norm": row["exe_norm"], "parent": row["parent_name"], "script": row["script"],
                           "count": 1}
        else:
            group["count"] += 1
    if groups:
        notify.task_after_commit("axon.tasks.alerts_notify_task", list(groups.values()))


def alerts_notify(groups: list[dict]) -> int:
    """In the worker: a message for each group that is news, dispatched at once. Returns how many.

    A few queries per snapshot, whatever the number of groups in it (a flood of 500 new names is 4 reads).
    """
    by_snapshot: dict[tuple[int, str], list[dict]] = {}
    for g in groups:
        by_snapshot.setdefault((g["snapshot_id"], g["host"]), []).append(g)
    messages = []
    for (snapshot_id, host), found in by_snapshot.items():
        names = sorted({g["name_norm"] for g in found})
        flagged = ProcessRecord.objects.filter(flagged=True)
        known = set(flagged.filter(endpoint__hostname=host, snapshot_id__lt=snapshot_id, name_norm__in=names)
                    .values_list("name_norm", "exe_norm", "parent_name", "script").distinct())
        fresh = {g["key"] for g in found if (g["name_norm"], g["exe_norm"], g["parent"], g["script"]) not in known}
        if not fresh:
            continue
        if floods := host_floods(flagged.filter(endpoint__hostname=host, status=ProcessRecord.Status.OPEN)):
            # One message for the host, not one per name (storm control groups its repeats).
            messages += [flood_message(flood, len(fresh)) for flood in floods.values()]
            continue
        here = flagged.filter(snapshot_id=snapshot_id)
        candidates = [c for c in flagged_candidates(here) if c.key in fresh]
        elsewhere: dict[str, set[str]] = {}
        for name, other in flagged.filter(name_norm__in=[c.name_norm for c in candidates], snapshot_id__lt=snapshot_id) \
                .exclude(endpoint__hostname=host).values_list("name_norm", "endpoint__hostname").distinct():
            elsewhere.setdefault(name, set()).add(other)
        cmdlines = {(n, e, p, sc): cmd for n, e, p, sc, cmd in here.values_list(
            "name_norm", "exe_norm", "parent_name", "script", "cmdline")}
        messages += [alert_message(c, sorted(elsewhere.get(c.name_norm, ())),
                                   cmdlines.get((c.name_norm, c.exe_norm, c.parent, c.script), "")) for c in candidates]
    if messages:
        messages_dispatch(messages)
    return len(messages)


def flood_message(flood: Flood, fresh: int) -> dict:
    return notify.message(
        "host.flood", summary=f"{flood.summary}; {fresh:,} of them new in its latest snapshot", severity="high",
        url=f"/alerts/?hostname={quote(flood.hostname)}&status=all", group=flood.key, host=flood.hostname,
        details={"programs": flood.programs, "observations": flood.observations, "new": fresh,
                 "arrived_seconds": round(flood.arrived_seconds, 1)})


def alert_message(c, elsewhere: list[str], cmdline: str) -> dict:
    """alert.new, or alert.spread when the program was flagged on other hosts before."""
    severity = alert_severity(c.risk)
    where = f" from {c.exe}" if c.exe else ""
    by = f" started by {c.parent}" if c.parent else ""
    why = c.reasons[0] if c.reasons else "flagged"
    if elsewhere:
        kind = "alert.spread"
        summary = f"{c.name} now also on {c.hostname}{where} (seen on {len(elsewhere)} other host(s)): {why} ({severity})"
    else:
        kind = "alert.new"
        summary = f"{c.name}{by} on {c.hostname}{where}: {why} ({severity})"
    return notify.message(
        kind, summary=summary, severity=severity, url=f"/alerts/{c.key}/", group=c.key, host=c.hostname, user=c.user,
        process={"name": c.name, "executable": c.exe, "command_line": cmdline, "parent": {"name": c.parent}},
        details={"key": c.key, "reasons": c.reasons, "risk_reasons": c.risk_reasons, "count": c.observations,
                 "other_hosts": elsewhere[:20]})


# --- the panic button and its runs -------------------------------------------------------------


def run_url(run: TrainingRun) -> str:
    return f"/admin/axon/trainingrun/{run.pk}/change/"


def press_pressed(run: TrainingRun, unticked: list[str], refused: list[str]) -> None:
    """A person's press: who, what it approves, what stays flagged."""
    if run.trigger == TrainingRun.Trigger.SCHEDULE:
        return
    approved = [f"{a.get('name', '?')} on {a.get('hostname', '?')}" for a in run.approved]
    left = len(unticked) + len(refused)
    notify.emit("panic.pressed", severity="medium", url=run_url(run),
                summary=f"{run.triggered_by_name or 'someone'} pressed the panic button ({run.trigger}): "
                        f"{len(approved)} program(s) to learn as normal, {left} left flagged",
                user=run.triggered_by_name,
                details={"run_id": run.pk, "reason": run.reason, "approved": approved[:100],
                         "left_flagged": left, "exclude": run.exclude})


def run_finished(run: TrainingRun) -> None:
    kinds: dict[str, str] = {TrainingRun.Status.FAILED: "run.failed", TrainingRun.Status.TIMED_OUT: "run.timed_out",
             TrainingRun.Status.REJECTED: "run.rejected"}
    if run.status not in kinds:
        return
    notify.emit(kinds[run.status], severity="high" if run.status != TrainingRun.Status.REJECTED else "medium",
                url=run_url(run), summary=f"Training run {run.pk} {run.get_status_display().lower()}: {run.message}",
                details={"run_id": run.pk, "trigger": run.trigger, "message": run.message})


def model_activated(version: int, user_name: str) -> None:
    notify.emit("model.activated", severity="medium", url="/admin/axon/modelversion/", user=user_name,
                summary=f"{user_name or 'someone'} activated model v{version} by hand",
                details={"version": version})


def approval_revoked(approval, approval_id: int, user_name: str, reopened: int) -> None:
    notify.emit("approval.revoked", severity="medium", url="/live-telemetry/", host=approval.hostname, user=user_name,
                summary=f"{user_name or 'someone'} revoked the approval of {approval.name} on {approval.hostname}: "
                        f"{reopened} observation(s) flagged again",
                details={"approval_id": approval_id, "name": approval.name, "exe": approval.exe,
                         "parent": approval.parent, "reopened": reopened, "run_id": approval.run_id})

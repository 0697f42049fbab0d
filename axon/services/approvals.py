"""Approvals: what a press approved applied, revoked by a person, or reverted when its run produced no model."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Min, Q

from audit.actors import Actor, Denied
from audit.models import AuditEvent
from audit.services import actor_name
from axon import notifications
from axon.models import Alert, AlertChange, Approval, TrainingRun
from axon.selectors import approval_key
from axon.services.versions import snapshots_recount
from telemetry.models import ProcessRecord


def approvals_create(*, run: TrainingRun) -> int:
    """Apply what the press approved: each key still flagged, and not marked malicious or closed since."""
    blocked = set(Alert.objects.filter(key__in=[a["key"] for a in run.approved], status__in=Alert.NOT_LEARNABLE)
                  .values_list("key", flat=True)) if run.approved else set()
    created = 0
    for a in run.approved:
        if a["key"] in blocked:
            continue
        script = a.get("script")  # runs pressed before scripts counted carry none: the old, wider meaning
        flagged = ProcessRecord.objects.filter(endpoint__hostname=a["hostname"], name_norm=a["name"], exe_norm=a["exe"],
                                               parent_name=a["parent"], flagged=True, status=ProcessRecord.Status.OPEN)
        if script is not None:
            flagged = flagged.filter(script=script)
        stats = flagged.aggregate(n=Count("id"), first=Min("observed_at"))
        if not stats["n"]:
            continue
        with transaction.atomic():
            Approval.objects.get_or_create(
                hostname=a["hostname"], name=a["name"], exe=a["exe"], parent=a["parent"], script=script,
                defaults={"approved_by": run.triggered_by, "approved_by_name": run.triggered_by_name, "run": run,
                          "observations": stats["n"], "first_seen": stats["first"]},
            )
            flagged.update(status=ProcessRecord.Status.APPROVED)
        created += 1
    return created


def _covered_records(approval: Approval):
    """The records of what an approval covers (with its script, when it has one), whatever their verdict."""
    records = ProcessRecord.objects.filter(
        endpoint__hostname=approval.hostname, name_norm=approval.name, exe_norm=approval.exe,
        parent_name=approval.parent)
    return records if approval.script is None else records.filter(script=approval.script)


def _approved_records(approval: Approval):
    """The records an approval marked approved."""
    return _covered_records(approval).filter(status=ProcessRecord.Status.APPROVED)


REVOKED_REASON = "scored while an approval stood; the approval was revoked"


def approval_revoke(*, actor: Actor, approval_id: int) -> Approval:
    """Withdraw an approval: the next model version no longer learns or honours it (the active one still does).

    Its observations go back to the open flags, so no later training learns them as ordinary: the
    ones it approved, and the ones a model that had learned it let through unflagged since.
    """
    if not actor.can("axon.delete_approval"):
        actor.audit("approval.revoked", resource_type="approval", resource_id=approval_id,
                    outcome=AuditEvent.Outcome.DENIED, aggregate=True)
        raise Denied("Only security admins may revoke an approval.")
    with transaction.atomic():
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        key = approval_key(approval.hostname, approval.name, approval.exe, approval.parent, approval.script)
        approved = _approved_records(approval)
        # Since it was first seen, or since the approval if the agent backdated what it sent meanwhile.
        since = Q(observed_at__gte=approval.first_seen or approval.created_at) | Q(
            snapshot__received_at__gte=approval.created_at)
        let_through = _covered_records(approval).filter(since, flagged=False)
        snapshots = set(approved.values_list("snapshot_id", flat=True)) | set(
            let_through.values_list("snapshot_id", flat=True))
        reopened = approved.update(flagged=True, status=ProcessRecord.Status.OPEN)
        reopened += let_through.update(flagged=True, status=ProcessRecord.Status.OPEN, reasons=[REVOKED_REASON])
        snapshots_recount(snapshots)
        # Held back from the next default press, or the program that was just revoked is approved again.
        alert, _ = Alert.objects.get_or_create(key=key, defaults={
            "hostname": approval.hostname, "name": approval.name, "exe": approval.exe, "parent": approval.parent})
        if alert.status != Alert.Status.MALICIOUS:
            alert.status, alert.note = Alert.Status.ACKNOWLEDGED, f"approval revoked by {actor_name(actor.user)}"
            alert.updated_by, alert.updated_by_name = actor.user, actor_name(actor.user)
            alert.save()
            AlertChange.objects.create(key=key, status=alert.status, note=alert.note, by=alert.updated_by,
                                       by_name=alert.updated_by_name)
        approval.delete()
    actor.audit("approval.revoked", resource_type="approval", resource_id=approval_id, details={
        "key": key,
        "hostname": approval.hostname,
        "name": approval.name, "exe": approval.exe, "parent": approval.parent, "run_id": approval.run_id,
        "reopened": reopened})
    notifications.approval_revoked(approval, approval_id, actor_name(actor.user), reopened)
    return approval


def approvals_revert(*, run: TrainingRun) -> int:
    """Undo the approvals of a run that did not produce a model."""
    reverted = 0
    for approval in Approval.objects.filter(run=run):
        with transaction.atomic():
            _approved_records(approval).filter(flagged=True).update(status=ProcessRecord.Status.OPEN)
            approval.delete()
        reverted += 1
    return reverted

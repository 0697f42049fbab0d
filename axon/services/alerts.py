"""Triage: people set the status and note of alerts."""
from __future__ import annotations

from django.db import transaction

from audit.actors import Actor, Denied, InvalidInput
from audit.models import AuditEvent
from audit.services import actor_name
from axon.detector.risk import Candidate
from axon.models import Alert, AlertChange
from axon.selectors import Flood, flagged_candidates, host_floods
from axon.serializers import TriageBody, first_error
from telemetry.models import ProcessRecord


class Overruled(Denied):
    """Allowed to triage, but not this: a security admin's verdict, or hiding a high-risk alert."""


def alerts_triage(*, actor: Actor, body) -> list[Candidate]:
    """Set the status (and note) of these keys; audited. Raises Denied or InvalidInput."""
    if not actor.can("axon.triage_alert"):
        actor.audit("alert.triaged", resource_type="alert", outcome=AuditEvent.Outcome.DENIED, aggregate=True)
        raise Denied("You need the Analyst or Security Admin role to triage alerts.")
    serializer = TriageBody(data=body if body not in (None, "") else {})
    if not serializer.is_valid():
        raise InvalidInput(f"{first_error(serializer.errors)} Nothing was changed.", serializer.errors)
    data = serializer.validated_data
    keys = set(data["keys"])
    open_flags = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN)
    floods = host_floods(open_flags)
    found: dict[str, Candidate | Flood] = {c.key: c for c in flagged_candidates(open_flags, floods=floods) if c.key in keys}
    found.update({f.key: f for f in floods.values() if f.key in keys})
    before = dict(Alert.objects.filter(key__in=keys).values_list("key", "status"))
    if missing := sorted(keys - set(found) - set(before)):
        raise InvalidInput(f"keys: {len(missing)} key(s) match no alert, for example {missing[0]}. Nothing was changed.",
                           {"keys": [f"unknown: {k}" for k in missing[:20]]})
    # An analyst may not undo a security admin's verdict, nor hide what is most likely an attack.
    overruled = sorted(k for k in keys if before.get(k) == Alert.Status.MALICIOUS != data["status"])
    # A flood is closed only by whoever may close what is high risk: it hides every program in it.
    hidden = sorted(k for k, c in found.items() if data["status"] == Alert.Status.CLOSED
                    and (isinstance(c, Flood) or c.risk == "high"))
    if (overruled or hidden) and not actor.can("axon.overrule_alert"):
        actor.audit("alert.triaged", resource_type="alert", resource_id=",".join(sorted(keys))[:64],
                    outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"reason": "overrule", "keys": sorted(keys), "status": data["status"], "malicious": overruled,
                             "high_risk": hidden})
        raise Overruled(
            f"Only a security admin may {'clear a malicious verdict' if overruled else 'close a high-risk alert'} "
            f"({len(overruled or hidden)} of these alerts); nothing was changed. Acknowledge it and add a note instead.")
    user = actor.user if getattr(actor.user, "pk", None) else None
    with transaction.atomic():
        for key in sorted(keys):
            c = found.get(key)
            defaults = {"status": data["status"], "note": data["note"], "updated_by": user,
                        "updated_by_name": actor_name(actor.user)}
            if isinstance(c, Flood):
                defaults.update(hostname=c.hostname, name="", exe="", parent="", seen_up_to=c.newest_id)
            elif c is not None:
                defaults.update(hostname=c.hostname, name=c.name_norm, exe=c.exe_norm, parent=c.parent,
                                seen_up_to=c.newest_id)
            Alert.objects.update_or_create(key=key, defaults=defaults)
            AlertChange.objects.create(key=key, status=data["status"], note=data["note"], by=user,
                                       by_name=actor_name(actor.user))
    actor.audit("alert.triaged", resource_type="alert", resource_id=",".join(sorted(keys))[:64],
                details={"keys": sorted(keys), "status": data["status"], "note": data["note"],
                         "before": {k: before.get(k, Alert.Status.OPEN) for k in sorted(keys)}})
    updated = {c.key: c for c in flagged_candidates(open_flags, floods=host_floods(open_flags)) if c.key in keys}
    return [updated[k] for k in sorted(updated)]

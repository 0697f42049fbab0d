"""The one function that records audit events; services call it explicitly."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from voltaxe.clientip import client_ip  # one resolution of the client's address, behind trusted proxies

logger = logging.getLogger(__name__)

# Repeats of the same event closer together than this are counted on one row.
AGGREGATE_WINDOW = timedelta(minutes=10)
# How many distinct values (host names, user names) a counted event keeps as a sample.
SAMPLE_MAX = 20
USER_AGENT_MAX = 200


def actor_name(user) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return getattr(user, "email", "") or getattr(user, "username", "") or str(user)


def audit_record(
    *,
    action: str,
    actor=None,
    request=None,
    resource_type: str = "",
    resource_id: str | int = "",
    outcome: str = AuditEvent.Outcome.SUCCESS,
    details: dict | None = None,
    aggregate: bool = False,
    aggregate_by: tuple[str, ...] = (),
    count: int = 1,
    sample: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent | None:
    """Record an event. A failure to record is logged and never hides the outcome of the action itself.

    aggregate: for outcomes a client can repeat at will (refusals, denials, failed log-ins). An
    identical event (same action, actor, address, resource and outcome) within AGGREGATE_WINDOW
    of the last one is counted on that event instead of written again, so that a flood is one
    row for as long as it lasts.
    aggregate_by: keys of `details` that also tell repeats apart (a refusal's reason); never a
    value the client chooses, or the client chooses how many rows it writes.
    count: how many occurrences this call records (a batch refused at once).
    sample: the key of a list in `details` that may differ between repeats (the host names or
    user names refused); the event keeps the first SAMPLE_MAX distinct values, so that a client
    cannot write a row per made-up name.
    ip, user_agent: the address and user agent, for a caller that has no request (an Actor carries them);
    given, they take the place of the request's.
    """
    user = actor if actor is not None else getattr(request, "user", None)
    user_fk = user if getattr(user, "pk", None) and getattr(user, "is_authenticated", False) else None
    fields = {
        "actor": user_fk,
        "actor_name": actor_name(user)[:255],
        "action": action,
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else "",
        "outcome": outcome,
        "ip_address": ip if ip is not None else client_ip(request),
    }
    details = dict(details or {})
    if sample:
        details[sample] = list(dict.fromkeys(details.get(sample, [])))[:SAMPLE_MAX]
    now = timezone.now()
    try:
        # A savepoint: a failed insert must not spoil the caller's transaction.
        with transaction.atomic():
            event = _last_repeat(fields, details, aggregate_by, now) if aggregate else None
            if event is not None:
                return _count_repeat(event, count=count, details=details, sample=sample, now=now)
            if user_agent is None:
                user_agent = request.META.get("HTTP_USER_AGENT", "") if request is not None else ""
            return AuditEvent.objects.create(**fields, timestamp=now, last_seen=now, count=count,
                                             user_agent=user_agent[:USER_AGENT_MAX], details=details)
    except Exception:
        logger.exception("Could not record audit event %s (%s) for %s", action, outcome, actor_name(user) or "-")
        return None


def _last_repeat(fields: dict, details: dict, aggregate_by: tuple[str, ...], now) -> AuditEvent | None:
    """The last identical event within AGGREGATE_WINDOW, locked, so that concurrent repeats each add
    their count and their sample."""
    same = AuditEvent.objects.filter(**fields, last_seen__gte=now - AGGREGATE_WINDOW)
    for key in aggregate_by:
        same = same.filter(**{f"details__{key}": details[key]})
    return same.select_for_update().order_by("-last_seen").first()


def _count_repeat(event: AuditEvent, *, count: int, details: dict, sample: str, now) -> AuditEvent:
    event.count += count
    event.last_seen = now
    if sample:
        kept = event.details.get(sample, [])
        event.details[sample] = kept + [v for v in details[sample] if v not in kept][:SAMPLE_MAX - len(kept)]
    event.save(update_fields=["count", "last_seen", "details"])
    return event

"""The one function that records audit events; services call it explicitly."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditEvent
from voltaxe.clientip import client_ip  # one resolution of the client's address, behind trusted proxies

logger = logging.getLogger(__name__)

# Repeats of the same event closer together than this are counted on one row.
AGGREGATE_WINDOW = timedelta(minutes=10)
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
) -> AuditEvent | None:
    """Record an event. A failure to record is logged and never hides the outcome of the action itself.

    aggregate: for outcomes a client can repeat at will (refusals, denials). An
    identical event (same action, actor, address, resource and outcome) within
    AGGREGATE_WINDOW of the last one is counted on that event instead of written again.
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
        "ip_address": client_ip(request),
    }
    now = timezone.now()
    try:
        # A savepoint: a failed insert must not spoil the caller's transaction.
        with transaction.atomic():
            if aggregate:
                same = AuditEvent.objects.filter(**fields, last_seen__gte=now - AGGREGATE_WINDOW).order_by("-last_seen")
                previous = same.values_list("pk", flat=True).first()
                if previous is not None and AuditEvent.objects.filter(pk=previous).update(count=F("count") + 1, last_seen=now):
                    return AuditEvent.objects.get(pk=previous)
            return AuditEvent.objects.create(
                **fields,
                timestamp=now,
                last_seen=now,
                user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:USER_AGENT_MAX],
                details=details or {},
            )
    except Exception:
        logger.exception("Could not record audit event %s (%s) for %s", action, outcome, actor_name(user) or "-")
        return None

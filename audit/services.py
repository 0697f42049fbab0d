"""The one function that records audit events; services call it explicitly."""
from __future__ import annotations

import logging

from django.db import transaction

from audit.models import AuditEvent
from voltaxe.clientip import client_ip  # one resolution of the client's address, behind trusted proxies

logger = logging.getLogger(__name__)


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
) -> AuditEvent | None:
    """Record an event. A failure to record is logged and never hides the outcome of the action itself."""
    user = actor if actor is not None else getattr(request, "user", None)
    user_fk = user if getattr(user, "pk", None) and getattr(user, "is_authenticated", False) else None
    try:
        # A savepoint: a failed insert must not spoil the caller's transaction.
        with transaction.atomic():
            return AuditEvent.objects.create(
                actor=user_fk,
                actor_name=actor_name(user)[:255],
                action=action,
                resource_type=resource_type,
                resource_id=str(resource_id) if resource_id is not None else "",
                outcome=outcome,
                ip_address=client_ip(request),
                user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:512],
                details=details or {},
            )
    except Exception:
        logger.exception("Could not record audit event %s (%s) for %s", action, outcome, actor_name(user) or "-")
        return None

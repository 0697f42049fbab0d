from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.schema import AuditPage
from audit.services import audit_record
from voltaxe.api import next_page_url, parse_int, parse_since, query_text, require_perm
from voltaxe.schema import refusals

CanReadAudit = require_perm("audit.view_auditevent", "Only security admins may read the audit log.")


def event_json(e: AuditEvent) -> dict:
    return {
        "id": e.pk, "timestamp": e.timestamp, "actor": e.actor_name, "action": e.action,
        "resource_type": e.resource_type, "resource_id": e.resource_id, "outcome": e.outcome,
        "ip_address": e.ip_address, "user_agent": e.user_agent, "details": e.details,
        "count": e.count, "last_seen": e.last_seen or e.timestamp,
    }


class AuditEventListView(APIView):
    permission_classes = [CanReadAudit]

    def permission_denied(self, request, message=None, code=None):
        # Someone signed in looking where they may not is worth a trace; repeats count on one event.
        # The unauthenticated are answered 401 and not recorded: anyone can knock.
        if request.user.is_authenticated:
            audit_record(action="audit.read", request=request, resource_type="audit_log",
                         outcome=AuditEvent.Outcome.DENIED, aggregate=True)
        super().permission_denied(request, message=message, code=code)

    @extend_schema(parameters=[
        OpenApiParameter("action", str, description="Exactly this action, for example retrain.started."),
        OpenApiParameter("resource_id", str, description="Exactly this resource, for example a run id."),
        OpenApiParameter("since", OpenApiTypes.DATETIME, description="At or after (RFC 3339)."),
        OpenApiParameter("offset", int, description="Skip this many (default 0)."),
        OpenApiParameter("limit", int, description="At most this many (default 100, at most 1000)."),
    ], responses={200: AuditPage, **refusals(400, 401, 403, said={
        403: "Only security admins may read the audit log (the refusal is audited)."})})
    def get(self, request):
        q = request.query_params
        limit = parse_int(q.get("limit"), "limit", 100, 1, 1000)
        offset = parse_int(q.get("offset"), "offset", 0, 0, 10**9)
        qs = AuditEvent.objects.all()
        if action := query_text(q, "action"):
            qs = qs.filter(action=action)
        if resource_id := query_text(q, "resource_id"):
            qs = qs.filter(resource_id=resource_id)
        since = parse_since(q.get("since"))
        if since:
            qs = qs.filter(timestamp__gte=since)
        rows = list(qs[offset:offset + limit + 1])
        return Response({"results": [event_json(e) for e in rows[:limit]],
                         "next": next_page_url(request, offset, limit, len(rows) > limit)})

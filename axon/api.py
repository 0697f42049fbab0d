from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actors import Actor, Denied, InvalidInput
from audit.services import actor_name
from axon.detector.risk import Candidate
from axon.models import AlertChange, Approval, ModelVersion, TrainingRun
from axon.schema import (
    AlertDetail,
    AlertPage,
    ApprovalPage,
    ModelPage,
    ModelVersionOut,
    Preview,
    RetrainAnswer,
    Revoked,
    RunDetail,
    RunPage,
    Status,
    Triaged,
)
from axon.selectors import (
    ALERT_ORDERINGS,
    ALERT_STATUSES,
    AlertQuery,
    Flood,
    alert_detail,
    alerts_search,
    approval_key,
    axon_status,
    retrain_estimate_seconds,
)
from axon.serializers import RetrainBody, TriageBody
from axon.services.alerts import alerts_triage
from axon.services.approvals import approval_revoke
from axon.services.press import RateLimited, RetrainOutcome, retrain_request
from axon.services.selection import retrain_preview
from axon.services.versions import model_version_activate
from axon.store import ArtifactError
from voltaxe.api import BadRequest, next_page_url, parse_int, require_perm
from voltaxe.schema import RETRY_AFTER, refusals

CanTrigger = require_perm("axon.trigger_retrain", "Only security admins may retrain the model.")
CanViewAxon = require_perm("axon.view_trainingrun", "You need the Analyst or Security Admin role to view training runs.")
CanViewApprovals = require_perm("axon.view_approval", "You need the Analyst or Security Admin role to view approvals.")


def run_json(run: TrainingRun | None, *, log: bool = False) -> dict | None:
    if run is None:
        return None
    body = {
        "id": run.pk, "status": run.status, "stage": run.stage, "progress": run.progress, "trigger": run.trigger,
        "triggered_by": run.triggered_by_name, "reason": run.reason, "exclude": run.exclude,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "duration_seconds": run.duration_seconds, "message": run.message, "approved": run.approved,
        "model_version": run.model_version.version if run.model_version_id else None,
    }
    if log:
        body["log"] = run.log
    return body


def version_json(v: ModelVersion) -> dict:
    return {
        "version": v.version, "status": v.status, "is_active": v.is_active, "trained_at": v.trained_at,
        "activated_at": v.activated_at, "window_start": v.window_start, "window_end": v.window_end,
        "data_until": v.data_until, "records": v.records, "processes": v.processes, "hosts": v.hosts,
        "flag_rate": v.metrics.get("recent_flag_rate"), "metrics": v.metrics, "parameters": v.parameters,
        "feature_version": v.feature_version, "feature_names": v.feature_names, "sklearn_version": v.sklearn_version,
        "sha256": v.sha256, "size_bytes": v.size_bytes, "training_seconds": v.training_seconds,
        "gate_reason": v.gate_reason, "run_id": v.run_id,
    }


def retrain_response(outcome: RetrainOutcome, user) -> dict:
    run = outcome.run
    estimate = retrain_estimate_seconds()
    if outcome.started:
        message = f"ML model retraining initiated. This will take about {estimate} seconds."
    else:
        message = f"A retrain is already in progress (run {run.pk}, {run.stage or run.status}); this press joined it."
    return {
        "status": outcome.status,
        "message": message,
        "estimated_completion": f"about {estimate} seconds",
        "triggered_by": actor_name(user),
        "timestamp": timezone.now().isoformat(),
        "note": "The model will be updated automatically when training completes. "
                "Monitor the Live Telemetry dashboard for updates.",
        "run_id": run.pk,
        "status_url": f"/api/axon/runs/{run.pk}/",
    }


def rate_limited_response(exc: RateLimited) -> Response:
    return Response({"detail": str(exc), "retry_after": exc.retry_after}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(exc.retry_after)})


def actor(request, door: str | None = None) -> Actor:
    if door is None:
        door = (TrainingRun.Trigger.DASHBOARD if isinstance(request.successful_authenticator, SessionAuthentication)
                else TrainingRun.Trigger.API)
    return Actor.from_request(request, door)


def service_errors(call):
    """The services' refusals as the contract's answers."""
    try:
        return call()
    except Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except InvalidInput as exc:
        raise BadRequest(exc.detail, exc.errors) from None


class RetrainView(APIView):
    """The panic button. Permission is the service's to check, so that every door refuses and audits alike."""

    @extend_schema(request=RetrainBody, parameters=[RETRY_AFTER], responses={
        200: OpenApiResponse(RetrainAnswer, "Started, or joined the run in flight (`already_running`)."),
        **refusals(400, 401, 403, 413, 429, said={
            400: "Bad input, a high-risk key approved without `confirm_high_risk` (`errors.confirm_high_risk` names "
                 "each with its reasons), or more than one press may approve; nothing started.",
            403: "Only security admins may retrain the model (the refusal is audited).",
            429: "At most one retrain per user per 5 minutes and 10 per hour in all (configurable)."})})
    def post(self, request):
        try:
            outcome = service_errors(lambda: retrain_request(actor=actor(request), body=request.data))
        except RateLimited as exc:
            return rate_limited_response(exc)
        return Response(retrain_response(outcome, request.user))


def candidate_json(c: Candidate) -> dict:
    return {
        "key": c.key, "hostname": c.hostname, "name": c.name, "exe": c.exe, "parent": c.parent, "user": c.user,
        "script": c.script or None,
        "count": c.observations, "first_seen": c.first_seen, "last_seen": c.last_seen, "max_score": c.max_score,
        "severity": c.severity or None, "severity_reasons": c.severity_reasons,
        "reasons": c.reasons, "risk": c.risk, "risk_reasons": c.risk_reasons, "status": c.status, "note": c.note,
        "updated_by": c.updated_by, "updated_at": c.updated_at,
        "reopened": c.reopened,  # closed, then flagged again
    }


def flood_json(f: Flood) -> dict:
    return {"key": f.key, "hostname": f.hostname, "programs": f.programs, "observations": f.observations,
            "first_seen": f.first_seen, "last_seen": f.last_seen, "arrived_seconds": round(f.arrived_seconds, 1),
            "status": f.status, "reopened": f.reopened, "summary": f.summary}


class RetrainPreviewView(APIView):
    permission_classes = [CanTrigger]

    @extend_schema(parameters=[
        OpenApiParameter("exclude", str, many=True, description="Process names that must not be learned (repeatable)."),
        OpenApiParameter("offset", int, description="Skip this many (default 0)."),
        OpenApiParameter("limit", int, description="At most this many (default 1000, at most 5000)."),
        OpenApiParameter("hostname", str, description="Only this host's candidates, one by one even if it floods."),
    ], responses={200: OpenApiResponse(Preview, "Every candidate a press could approve now; `total` counts them all."),
                  **refusals(400, 401, 403, said={403: "Only security admins may retrain the model."})})
    def get(self, request):
        exclude = [x for x in request.query_params.getlist("exclude") if x]
        offset = parse_int(request.query_params.get("offset"), "offset", 0, 0, 10**9)
        limit = parse_int(request.query_params.get("limit"), "limit", 1000, 1, 5000)
        hostname = (request.query_params.get("hostname") or "").strip()[:255]
        body = retrain_preview(exclude=exclude, offset=offset, limit=limit, hostname=hostname)
        body["floods"] = [flood_json(f) for f in body["floods"]]
        body["next"] = next_page_url(request, offset, limit, body.pop("more"))
        return Response(body)


ERRORS = refusals(400, 401, 403, said={400: 'A parameter is malformed: {"detail", "errors"} name it.',
                                       403: "Not an analyst or security admin (an agent key included)."})
PAGING = [
    OpenApiParameter("offset", int, description="Skip this many (default 0)."),
    OpenApiParameter("limit", int, description="At most this many (default 50, at most 500)."),
]
PAGING_APPROVALS = [PAGING[0], OpenApiParameter("limit", int, description="At most this many (default 500, at most 1000).")]
VIEWERS = refusals(401, 403, said={403: "You need the Analyst or Security Admin role (an agent key holds neither)."})


class AlertListView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(parameters=[
        OpenApiParameter("status", str, enum=list(ALERT_STATUSES), description="Default open; all for every status."),
        OpenApiParameter("hostname", str, description="Exactly this host."),
        OpenApiParameter("risk", str, enum=["low", "high"]),
        OpenApiParameter("q", str, description="A piece of the name, path, parent, user or script (any case)."),
        OpenApiParameter("since", OpenApiTypes.DATETIME, description="Seen at or after (RFC 3339)."),
        OpenApiParameter("until", OpenApiTypes.DATETIME, description="Seen at or before (RFC 3339)."),
        OpenApiParameter("ordering", str, enum=list(ALERT_ORDERINGS), description="Default severity."),
        *PAGING,
    ], responses={200: OpenApiResponse(AlertPage, "Alerts grouped by approval key; `total` counts every match."), **ERRORS})
    def get(self, request):
        query = service_errors(lambda: AlertQuery.from_params(request.query_params))
        offset = parse_int(request.query_params.get("offset"), "offset", 0, 0, 10**9)
        limit = parse_int(request.query_params.get("limit"), "limit", 50, 1, 500)
        rows, total, floods = alerts_search(query=query, offset=offset, limit=limit)
        return Response({"total": total, "results": [candidate_json(c) for c in rows], "floods": [flood_json(f) for f in floods],
                         "next": next_page_url(request, offset, limit, offset + limit < total)})


def change_json(change: AlertChange) -> dict:
    return {"status": change.status, "note": change.note, "by": change.by_name, "at": change.at}


def alert_detail_json(detail: dict) -> dict:
    approval = detail["approval"]
    return {**candidate_json(detail["alert"]), "observations": detail["observations"],
            "history": [change_json(h) for h in detail["history"]],
            "approval": None if approval is None else approval_json(approval)}


class AlertDetailView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(parameters=[
        OpenApiParameter("offset", int, description="Skip this many observations (default 0)."),
        OpenApiParameter("limit", int, description="At most this many observations (default 100, at most 1000)."),
    ], responses={
        200: OpenApiResponse(AlertDetail, "The alert, its observations (newest first), history and approval."),
        **ERRORS, **refusals(404, said={404: "No alert has this key (or it has no open flags)."})})
    def get(self, request, key: str):
        offset = parse_int(request.query_params.get("offset"), "offset", 0, 0, 10**9)
        limit = parse_int(request.query_params.get("limit"), "limit", 100, 1, 1000)
        detail = alert_detail(key=key, offset=offset, limit=limit)
        if detail is None:
            raise Http404("No alert has this key: a newer model may have cleared it. "
                          "Look for it by host or name in the alerts list.")
        return Response({**alert_detail_json(detail),
                         "next": next_page_url(request, offset, limit, detail["more"])})


class AlertTriageView(APIView):
    @extend_schema(request=TriageBody, responses={
        200: OpenApiResponse(Triaged, "Set and audited."),
        **refusals(400, 401, 403, 413, said={
            403: "Triage needs the Analyst or Security Admin role; clearing malicious or closing a high-risk "
                 "alert needs a security admin."})})
    def post(self, request):
        updated = service_errors(lambda: alerts_triage(actor=actor(request), body=request.data))
        return Response({"results": [candidate_json(c) for c in updated]})


class RunListView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(parameters=[OpenApiParameter("limit", int, description="At most this many (default 20, at most 200).")],
                   responses={200: RunPage, **VIEWERS, **refusals(400)})
    def get(self, request):
        limit = parse_int(request.query_params.get("limit"), "limit", 20, 1, 200)
        runs = TrainingRun.objects.select_related("model_version")[:limit]
        return Response({"results": [run_json(r) for r in runs]})


class RunDetailView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(responses={200: OpenApiResponse(RunDetail, "The run, with its log."), **VIEWERS,
                              **refusals(404, said={404: "No training run has this id."})})
    def get(self, request, pk: int):
        return Response(run_json(get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=pk), log=True))


class StatusView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(responses={200: Status, **VIEWERS})
    def get(self, request):
        return Response(status_json())


def status_json() -> dict:
    s = axon_status()
    active = s["active"]
    return {
        "active_model": None if active is None else {
            "version": active.version, "trained_at": active.trained_at, "records": active.records,
            "processes": active.processes, "hosts": active.hosts, "flag_rate": active.metrics.get("recent_flag_rate"),
        },
        "serving_version": s["serving_version"],
        "model_error": s["model_error"],
        "current_run": run_json(s["current_run"]),
        "last_run": run_json(s["last_run"]),
        "worker_alive": s["worker_alive"],
        "estimate_seconds": s["estimate_seconds"],
    }


class ModelListView(APIView):
    permission_classes = [CanViewAxon]

    @extend_schema(responses={200: OpenApiResponse(ModelPage, "The newest 100 versions, newest first."), **VIEWERS})
    def get(self, request):
        return Response({"results": [version_json(v) for v in ModelVersion.objects.all()[:100]]})


class ModelActivateView(APIView):
    """Who may activate is the service's to check, so that every door refuses and audits alike."""

    permission_classes = [CanViewAxon]

    @extend_schema(request=None, responses={
        200: OpenApiResponse(ModelVersionOut, "Active now, for every web process and worker."),
        **refusals(401, 403, 404, 409, said={
            403: "Only security admins may activate a model version (the refusal is audited).",
            404: "There is no model of this version.",
            409: "This version cannot serve (its file or features do not match); the active model keeps serving."})})
    def post(self, request, version: int):
        try:
            target = service_errors(
                lambda: model_version_activate(version=version, actor=actor(request)))
        except ModelVersion.DoesNotExist:
            raise Http404(f"There is no model v{version}.") from None
        except (ArtifactError, ValueError) as exc:
            return Response({"detail": f"Model v{version} was not activated: {exc} The active model keeps serving."},
                            status=status.HTTP_409_CONFLICT)
        return Response(version_json(target))


def approval_json(a: Approval) -> dict:
    return {"id": a.pk, "key": approval_key(a.hostname, a.name, a.exe, a.parent, a.script),
            "created_at": a.created_at, "approved_by": a.approved_by_name, "hostname": a.hostname, "name": a.name,
            "exe": a.exe, "parent": a.parent, "script": a.script,
            "observations": a.observations, "first_seen": a.first_seen, "run_id": a.run_id}


class ApprovalListView(APIView):
    permission_classes = [CanViewApprovals]

    @extend_schema(parameters=PAGING_APPROVALS, responses={200: ApprovalPage, **ERRORS})
    def get(self, request):
        offset = parse_int(request.query_params.get("offset"), "offset", 0, 0, 10**9)
        limit = parse_int(request.query_params.get("limit"), "limit", 500, 1, 1000)
        rows = list(Approval.objects.all()[offset:offset + limit + 1])
        return Response({"results": [approval_json(a) for a in rows[:limit]],
                         "next": next_page_url(request, offset, limit, len(rows) > limit)})


class ApprovalRevokeView(APIView):
    """Security admins withdraw an approval; it takes effect from the next model version."""

    @extend_schema(request=None, responses={
        200: OpenApiResponse(Revoked, "Revoked; the next model version no longer honours it."),
        **refusals(401, 403, 404, said={403: "Only security admins may revoke an approval (the refusal is audited).",
                                        404: "No approval has this id."})})
    def post(self, request, pk: int):
        get_object_or_404(Approval, pk=pk)
        approval = service_errors(lambda: approval_revoke(actor=actor(request), approval_id=pk))
        return Response({**approval_json(approval), "id": pk, "revoked": True,
                         "detail": "Revoked. The active model still honours it; the next model version will not."})

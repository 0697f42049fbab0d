from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.services import actor_name, audit_record
from axon import services
from axon.models import Approval, ModelVersion, TrainingRun
from axon.store import ArtifactError
from telemetry.validation import encodable
from voltaxe.api import BadRequest, parse_int, require_perm

CanTrigger = require_perm("axon.trigger_retrain", "Only security admins may retrain the model.")
CanActivate = require_perm("axon.activate_modelversion", "Only security admins may activate a model version.")
CanViewAxon = require_perm("axon.view_trainingrun", "You need the Analyst or Security Admin role to view training runs.")
CanViewApprovals = require_perm("axon.view_approval", "You need the Analyst or Security Admin role to view approvals.")

MAX_REASON = 1000
MAX_EXCLUDE = 200


def run_json(run: TrainingRun | None, *, log: bool = False) -> dict | None:
    if run is None:
        return None
    body = {
        "id": run.pk, "status": run.status, "stage": run.stage, "progress": run.progress, "trigger": run.trigger,
        "triggered_by": run.triggered_by_name, "reason": run.reason, "exclude": run.exclude,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "duration_seconds": run.duration_seconds, "message": run.message,
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


def parse_retrain_body(data) -> tuple[str, list[str]]:
    """The optional {"reason", "exclude"} body, checked field by field."""
    if data in (None, "", {}):
        return "", []
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object such as {\"reason\": \"...\", \"exclude\": [\"name\"]}, or empty. "
                         "Nothing was started.",
                         {"non_field_errors": ["expected an object"]})
    errors: dict[str, list[str]] = {}
    reason = data.get("reason") or ""
    if not isinstance(reason, str):
        errors["reason"] = ["must be a string"]
    elif len(reason) > MAX_REASON or "\x00" in reason or not encodable(reason):
        errors["reason"] = [f"must be at most {MAX_REASON} characters of text"]
    exclude = data.get("exclude") or []
    if not isinstance(exclude, list) or not all(
        isinstance(x, str) and 0 < len(x) <= 255 and "\x00" not in x and encodable(x) for x in exclude
    ):
        errors["exclude"] = ["must be a list of process names (strings of 1 to 255 characters)"]
    elif len(exclude) > MAX_EXCLUDE:
        errors["exclude"] = [f"may list at most {MAX_EXCLUDE} names"]
    if errors:
        field, messages = next(iter(errors.items()))
        raise BadRequest(f"{field} {messages[0]}. Nothing was started.", errors)
    return reason.strip(), exclude


def retrain_response(outcome: services.RetrainOutcome, user) -> dict:
    run = outcome.run
    estimate = services.retrain_estimate_seconds()
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


def rate_limited_response(exc: services.RateLimited) -> Response:
    return Response({"detail": str(exc), "retry_after": exc.retry_after}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(exc.retry_after)})


class RetrainView(APIView):
    """The panic button."""

    permission_classes = [CanTrigger]

    def permission_denied(self, request, message=None, code=None):
        if request.user and request.user.is_authenticated:
            audit_record(action="retrain.denied", request=request, resource_type="training_run",
                         outcome=AuditEvent.Outcome.DENIED, details={"reason": "missing axon.trigger_retrain"})
        super().permission_denied(request, message=message, code=code)

    def post(self, request):
        reason, exclude = parse_retrain_body(request.data)
        trigger = (TrainingRun.Trigger.DASHBOARD if isinstance(request.successful_authenticator, SessionAuthentication)
                   else TrainingRun.Trigger.API)
        try:
            outcome = services.retrain_request(user=request.user, trigger=trigger, reason=reason, exclude=exclude,
                                               request=request)
        except services.RateLimited as exc:
            return rate_limited_response(exc)
        return Response(retrain_response(outcome, request.user))


class RetrainPreviewView(APIView):
    permission_classes = [CanTrigger]

    def get(self, request):
        exclude = [x for x in request.query_params.getlist("exclude") if x]
        return Response(services.retrain_preview(exclude=exclude))


class RunListView(APIView):
    permission_classes = [CanViewAxon]

    def get(self, request):
        services.runs_reap()
        limit = parse_int(request.query_params.get("limit"), "limit", 20, 1, 200)
        runs = TrainingRun.objects.select_related("model_version")[:limit]
        return Response({"results": [run_json(r) for r in runs]})


class RunDetailView(APIView):
    permission_classes = [CanViewAxon]

    def get(self, request, pk: int):
        services.runs_reap()
        return Response(run_json(get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=pk), log=True))


class StatusView(APIView):
    permission_classes = [CanViewAxon]

    def get(self, request):
        return Response(status_json())


def status_json() -> dict:
    s = services.axon_status()
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

    def get(self, request):
        return Response({"results": [version_json(v) for v in ModelVersion.objects.all()[:100]]})


class ModelActivateView(APIView):
    permission_classes = [CanActivate]

    def post(self, request, version: int):
        get_object_or_404(ModelVersion, version=version)
        try:
            target = services.model_version_activate(version=version, user=request.user, request=request)
        except (ArtifactError, ValueError) as exc:
            audit_record(action="model.activated", request=request, resource_type="model_version", resource_id=version,
                         outcome=AuditEvent.Outcome.FAILURE, details={"error": str(exc)})
            return Response({"detail": f"Model v{version} was not activated: {exc} The active model keeps serving."},
                            status=status.HTTP_409_CONFLICT)
        return Response(version_json(target))


class ApprovalListView(APIView):
    permission_classes = [CanViewApprovals]

    def get(self, request):
        rows = Approval.objects.all()[:500]
        return Response({"results": [
            {"id": a.pk, "created_at": a.created_at, "approved_by": a.approved_by_name, "hostname": a.hostname,
             "name": a.name, "exe": a.exe, "parent": a.parent, "observations": a.observations,
             "first_seen": a.first_seen, "run_id": a.run_id}
            for a in rows
        ]})

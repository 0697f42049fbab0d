"""The Live Telemetry page: server-rendered, refreshed by polling one small JSON view."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from rest_framework.utils.encoders import JSONEncoder

from axon import services as axon_services
from axon.api import retrain_response, run_json, status_json, version_json
from axon.models import ModelVersion, TrainingRun
from axon.store import ArtifactError
from telemetry.api import anomaly_json
from telemetry.models import Snapshot
from telemetry.services import anomalies_list, telemetry_summary


def _require_viewer(request) -> None:
    if not request.user.has_perm("telemetry.view_snapshot"):
        raise PermissionDenied("You need the Analyst or Security Admin role to view telemetry.")


def activity_24h() -> list[dict]:
    """Snapshots and anomalies per hour over the last 24 hours, oldest first, with empty hours filled."""
    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = (
        Snapshot.objects.filter(timestamp__gte=start).order_by()
        .annotate(hour=TruncHour("timestamp")).values("hour")
        .annotate(snapshots=Count("id"), anomalies=Sum("anomaly_count"))
    )
    by_hour = {r["hour"]: r for r in rows}
    return [
        {"hour": start + timedelta(hours=i),
         "snapshots": by_hour.get(start + timedelta(hours=i), {}).get("snapshots", 0),
         "anomalies": by_hour.get(start + timedelta(hours=i), {}).get("anomalies", 0) or 0}
        for i in range(24)
    ]


def live_state(user) -> dict:
    rows, _ = anomalies_list(status="open", limit=25)
    can_retrain = user.has_perm("axon.trigger_retrain")
    return {
        "summary": telemetry_summary(),
        "axon": status_json(),
        "anomalies": [anomaly_json(r) for r in rows],
        "runs": [run_json(r) for r in TrainingRun.objects.select_related("model_version")[:10]],
        "versions": [version_json(v) for v in ModelVersion.objects.all()[:10]],
        "activity": activity_24h(),
        "can_retrain": can_retrain,
        "can_activate": user.has_perm("axon.activate_modelversion"),
        "now": timezone.now(),
    }


@login_required
def live_telemetry(request):
    _require_viewer(request)
    state = live_state(request.user)
    preview = axon_services.retrain_preview() if state["can_retrain"] else {"will_learn": []}
    return render(request, "telemetry/live.html", {
        **state, "live": state, "preview": preview, "window_days": settings.TRAINING_WINDOW_DAYS,
    })


@login_required
def live_data(request):
    """What the page polls every 5 seconds."""
    _require_viewer(request)
    return JsonResponse(live_state(request.user), encoder=JSONEncoder)


@login_required
@require_POST
def live_retrain(request):
    """The confirmation modal's form, for browsers without JavaScript (the script posts to the API instead)."""
    if not request.user.has_perm("axon.trigger_retrain"):
        raise PermissionDenied("Only security admins may retrain the model.")
    offered = request.POST.getlist("offered")
    learn = set(request.POST.getlist("learn"))
    exclude = [name for name in offered if name not in learn]
    reason = request.POST.get("reason", "").strip()[:1000]
    try:
        outcome = axon_services.retrain_request(user=request.user, trigger=TrainingRun.Trigger.DASHBOARD,
                                                reason=reason, exclude=exclude, request=request)
    except axon_services.RateLimited as exc:
        messages.error(request, str(exc))
    else:
        body = retrain_response(outcome, request.user)
        (messages.success if outcome.started else messages.info)(request, body["message"])
    return redirect("live-telemetry")


@login_required
@require_POST
def live_activate(request, version: int):
    if not request.user.has_perm("axon.activate_modelversion"):
        raise PermissionDenied("Only security admins may activate a model version.")
    try:
        axon_services.model_version_activate(version=version, user=request.user, request=request)
    except ModelVersion.DoesNotExist:
        messages.error(request, f"There is no model v{version}.")
    except (ArtifactError, ValueError) as exc:
        messages.error(request, f"Model v{version} was not activated: {exc}")
    else:
        messages.success(request, f"Model v{version} is now active.")
    return redirect("live-telemetry")

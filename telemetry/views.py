"""The Live Telemetry page: rendered on the server, refreshed by polling for its parts rendered the same way."""
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
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_POST

from axon import services as axon_services
from axon.api import approval_json, candidate_json, retrain_response, run_json, status_json, version_json
from axon.models import Approval, ModelVersion, TrainingRun
from axon.store import ArtifactError
from telemetry.models import Snapshot
from telemetry.services import telemetry_summary


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


PAGE_PREVIEW_LIMIT = 2000

# The page's live parts: the id of the element each one fills, and its template. The page includes
# these templates on its first render; the poll renders the same ones from the same context and the
# script swaps them in by id. One renderer: nothing on the page is built by the script.
LIVE_FRAGMENTS = {
    "updated-at": "telemetry/_updated.html",
    "figures": "telemetry/_figures.html",
    "training-banner": "telemetry/_training.html",
    "activity-chart": "telemetry/_activity.html",
    "snapshots-body": "telemetry/_snapshots.html",
    "alerts-body": "telemetry/_alerts.html",
    "runs-body": "telemetry/_runs.html",
    "versions-body": "telemetry/_versions.html",
    "approvals-body": "telemetry/_approvals.html",
    "estimate": "telemetry/_estimate.html",
}


def activity_chart(activity: list[dict], *, width: int = 600, height: int = 160, pad: int = 24) -> dict:
    """The 24 h chart's geometry (an inline SVG): two bars an hour, each series on its own scale, so that a
    few hundred anomalies do not flatten the snapshot bars."""
    max_snap = max([1, *(h["snapshots"] for h in activity)])
    max_anom = max([1, *(h["anomalies"] for h in activity)])
    step = (width - pad) / len(activity)

    def bar(x: float, value: int, top: int) -> dict:
        y = height - pad - value / top * (height - 2 * pad)
        return {"x": round(x, 2), "y": round(y, 2), "width": round(step / 2 - 1, 2), "height": round(height - pad - y, 2)}

    hours = [{**h, "snap": bar(pad + i * step + 1, h["snapshots"], max_snap),
              "anom": bar(pad + i * step + step / 2, h["anomalies"], max_anom),
              "label_x": round(pad + i * step, 2) if i % 6 == 0 else None}
             for i, h in enumerate(activity)]
    return {"width": width, "height": height, "pad": pad, "axis_y": height - pad, "label_y": height - 6,
            "max_snapshots": max_snap, "max_anomalies": max_anom, "hours": hours}


def live_context(user) -> dict:
    """What the page's live parts show: the first render and every poll use this, so they cannot differ."""
    alerts, _ = axon_services.alerts_list(limit=50)
    can_revoke = user.has_perm("axon.delete_approval")
    return {
        "summary": telemetry_summary(),
        "axon": status_json(),
        "alerts": [candidate_json(a) for a in alerts],
        "approvals": [approval_json(a) for a in Approval.objects.all()[:50]] if can_revoke else [],
        "runs": [run_json(r) for r in TrainingRun.objects.select_related("model_version")[:10]],
        "versions": [version_json(v) for v in ModelVersion.objects.all()[:10]],
        "chart": activity_chart(activity_24h()),
        "can_retrain": user.has_perm("axon.trigger_retrain"),
        "can_activate": user.has_perm("axon.activate_modelversion"),
        "can_triage": user.has_perm("axon.triage_alert"),
        "can_revoke": can_revoke,
        "now": timezone.now(),
    }


def live_fragments(request, context: dict) -> dict[str, str]:
    """Every live part of the page, rendered (with the request, so that their forms carry a CSRF token)."""
    return {key: render_to_string(name, context, request=request) for key, name in LIVE_FRAGMENTS.items()}


def preview_context() -> dict:
    """The modal's candidates grouped by program (name and path), and what the button will say."""
    preview = axon_services.retrain_preview(limit=PAGE_PREVIEW_LIMIT)
    groups: dict[tuple, dict] = {}
    for item in preview["will_learn"]:
        group = groups.setdefault((item["name"], item["exe"]), {"name": item["name"], "exe": item["exe"], "items": []})
        group["items"].append(item)
    ticked = sum(1 for g in groups.values() if any(i["default"] for i in g["items"]))
    return {"preview": preview, "preview_groups": list(groups.values()), "preview_shown": len(preview["will_learn"]),
            "retrain_label": retrain_label(ticked)}


def retrain_label(programs: int) -> str:
    """What the button will do (the script says the same as boxes are ticked)."""
    if not programs:
        return "Retrain, learn nothing new"
    return f"Retrain and learn {programs} program{'s' if programs != 1 else ''}"


@login_required
def live_telemetry(request):
    _require_viewer(request)
    context = live_context(request.user)
    preview = preview_context() if context["can_retrain"] else {"preview": {"will_learn": []}}
    return render(request, "telemetry/live.html", {**context, **preview, "window_days": settings.TRAINING_WINDOW_DAYS})


@login_required
def live_preview(request):
    """The modal's list, rendered by the same template as the page's first load."""
    if not request.user.has_perm("axon.trigger_retrain"):
        raise PermissionDenied("Only security admins may retrain the model.")
    return render(request, "telemetry/_preview.html", preview_context())


@login_required
def live_data(request):
    """What the page polls: its live parts, rendered, in one answer (the script swaps each in by id)."""
    _require_viewer(request)
    return JsonResponse({"fragments": live_fragments(request, live_context(request.user))})


@login_required
@require_POST
def live_retrain(request):
    """The confirmation modal's form, for browsers without JavaScript (the script posts to the API instead).

    It sends the preview keys that were ticked, so it approves exactly those; the service
    checks the permission and the body and audits the outcome, as for every other door.
    """
    actor = axon_services.Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    body = {"reason": request.POST.get("reason", ""), "approve": request.POST.getlist("approve")}
    try:
        outcome = axon_services.retrain_request(actor=actor, body=body)
    except axon_services.Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except axon_services.InvalidInput as exc:
        messages.error(request, exc.detail)
    except axon_services.RateLimited as exc:
        messages.error(request, str(exc))
    else:
        body = retrain_response(outcome, request.user)
        if outcome.started:
            messages.success(request, body["message"])
        else:  # the script removes it once that run is over
            messages.info(request, body["message"], extra_tags="joined")
    return redirect("live-telemetry")


@login_required
@require_POST
def live_triage(request):
    """Triage from the anomalies table without JavaScript: the ticked keys get one status."""
    actor = axon_services.Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    body = {"keys": request.POST.getlist("key"), "status": request.POST.get("status", ""), "note": request.POST.get("note", "")}
    try:
        updated = axon_services.alerts_triage(actor=actor, body=body)
    except axon_services.Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except axon_services.InvalidInput as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{len(updated)} alert(s) marked {body['status']}.")
    return redirect("live-telemetry")


@login_required
@require_POST
def live_revoke(request, pk: int):
    actor = axon_services.Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    try:
        approval = axon_services.approval_revoke(actor=actor, approval_id=pk)
    except axon_services.Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except Approval.DoesNotExist:
        messages.error(request, "That approval no longer exists.")
    else:
        messages.success(request, f"Revoked the approval of {approval.name} on {approval.hostname}. "
                                  "The active model still honours it; the next model version will not.")
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

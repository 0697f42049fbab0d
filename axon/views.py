"""The Live page's model panel and the panic button's page doors (the form posts without JavaScript).

The page itself is telemetry's; this panel is registered with it in AxonConfig.ready.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.actors import Actor, Denied, InvalidInput
from axon.api import approval_json, candidate_json, flood_json, retrain_response, run_json, status_json, version_json
from axon.models import Approval, ModelVersion, TrainingRun
from axon.selectors import alerts_overview
from axon.services.alerts import Overruled, alerts_triage
from axon.services.approvals import approval_revoke
from axon.services.press import RateLimited, retrain_request
from axon.services.selection import retrain_preview
from axon.services.versions import model_version_activate
from axon.store import ArtifactError
from telemetry.views import Section

PAGE_PREVIEW_LIMIT = 2000


class ModelPanel:
    """The model's part of the Live page: status, alerts, runs, versions, approvals, and the modal's list."""

    sections = [
        Section("axon/live/status.html", place="top"),
        Section("axon/live/alerts.html"),
        Section("axon/live/training.html"),
        Section("axon/live/approvals.html"),
        Section("axon/live/panic.html"),
    ]
    # The id of each element (in the sections above) a live part fills; the poll renders them again.
    fragments = {
        "training-banner": "axon/_training.html",
        "alerts-body": "axon/_alerts.html",
        "runs-body": "axon/_runs.html",
        "versions-body": "axon/_versions.html",
        "approvals-body": "axon/_approvals.html",
        "estimate": "axon/_estimate.html",
    }

    def context(self, user) -> dict:
        overview = alerts_overview(limit=50)
        alerts, alerts_more = overview["page"], overview["more"]
        can_revoke = user.has_perm("axon.delete_approval")
        axon = status_json()
        active = axon["active_model"]["version"] if axon["active_model"] else None
        approvals = [approval_json(a) for a in Approval.objects.all()[:50]] if can_revoke else []
        versions = [version_json(v) for v in ModelVersion.objects.all()[:10]]
        for a in approvals:  # what the Revoke and Activate confirmations say will change
            a["confirm"] = " ".join(revoke_change(a))
        for v in versions:
            v["confirm"] = " ".join(activate_change(v, active))
        return {
            "axon": axon,
            "alerts": [candidate_json(a) for a in alerts], "alerts_more": alerts_more,
            "floods": [flood_json(f) for f in overview["floods"]],
            # The figures card counts what the table lists (telemetry's card shows these when a panel gives them).
            "alert_figures": {"open": overview["open"], "observations": overview["open_observations"],
                              "acknowledged": overview["by_status"].get("acknowledged", 0),
                              "malicious": overview["by_status"].get("malicious", 0)},
            "approvals": approvals,
            "runs": [run_json(r) for r in TrainingRun.objects.select_related("model_version")[:10]],
            "versions": versions,
            "can_retrain": user.has_perm("axon.trigger_retrain"),
            "can_activate": user.has_perm("axon.activate_modelversion"),
            "can_triage": user.has_perm("axon.triage_alert"),
            "can_revoke": can_revoke,
        }

    def page(self, request) -> dict:
        if not request.user.has_perm("axon.trigger_retrain"):
            return {"preview": {"will_learn": []}}
        # A press the server refused (the form without JavaScript) comes back as the person left it.
        posted = request.session.pop(REFUSED_FORM, None)
        return {**preview_context(posted), "window_days": settings.TRAINING_WINDOW_DAYS,
                "panic_reason": posted["reason"] if posted else ""}


REFUSED_FORM = "axon:refused-panic-form"


def preview_context(posted: dict | None = None) -> dict:
    """The modal's candidates grouped by program (name and path), and what the button will say; ticked
    as the preview says, or as a refused form had them."""
    preview = retrain_preview(limit=PAGE_PREVIEW_LIMIT)
    groups: dict[tuple, dict] = {}
    for item in preview["will_learn"]:
        item["ticked"] = item["key"] in posted["approve"] if posted else item["default"]
        item["confirmed"] = bool(posted) and item["key"] in posted["confirm_high_risk"]
        group = groups.setdefault((item["name"], item["exe"]), {"name": item["name"], "exe": item["exe"], "items": []})
        group["items"].append(item)
    ticked = sum(1 for g in groups.values() if any(i["ticked"] for i in g["items"]))
    return {"preview": preview, "preview_groups": list(groups.values()), "preview_shown": len(preview["will_learn"]),
            "retrain_label": retrain_label(ticked)}


def retrain_label(programs: int) -> str:
    """What the button will do (the script says the same as boxes are ticked)."""
    if not programs:
        return "Retrain, learn nothing new"
    return f"Retrain and learn {programs} program{'s' if programs != 1 else ''}"


@login_required
def live_preview(request):
    """The modal's list, rendered by the same template as the page's first load."""
    if not request.user.has_perm("axon.trigger_retrain"):
        raise PermissionDenied("Only security admins may retrain the model.")
    return render(request, "axon/_preview.html", preview_context())


@login_required
@require_POST
def live_retrain(request):
    """The confirmation modal's form, for browsers without JavaScript (the script posts to the API instead).

    It sends the preview keys that were ticked, so it approves exactly those; the service
    checks the permission and the body and audits the outcome, as for every other door.
    """
    actor = Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    body = {"reason": request.POST.get("reason", ""), "approve": request.POST.getlist("approve"),
            "confirm_high_risk": request.POST.getlist("confirm_high_risk")}
    try:
        outcome = retrain_request(actor=actor, body=body)
    except Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except (InvalidInput, RateLimited) as exc:
        messages.error(request, getattr(exc, "detail", None) or str(exc))
        request.session[REFUSED_FORM] = body  # the modal opens again with these ticks and this reason
        return redirect(reverse("live-telemetry") + "#panic-modal")
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
    updated = triage_form(request)
    if updated is not None:
        messages.success(request, f"{len(updated)} alert(s) marked {request.POST.get('status', '')}.")
    return redirect("live-telemetry")


def triage_form(request, *, empty: str = "") -> list | None:
    """A page's triage form (the ticked `key`s, a status, a note) through the service: the alerts as they are
    now, or None when it was refused, said in the page's messages (`empty`: the sentence for nothing ticked)."""
    actor = Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    keys = request.POST.getlist("key")
    body = {"keys": keys, "status": request.POST.get("status", ""), "note": request.POST.get("note", "")}
    try:
        return alerts_triage(actor=actor, body=body)
    except Overruled as exc:
        messages.error(request, str(exc))
    except Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except InvalidInput as exc:
        messages.error(request, empty if empty and not keys else exc.detail)
    return None


def _confirmation(request, *, title: str, change: list[str], action: str):
    """The second step before a change that takes effect at once, for the form posted without the script
    (the script asks the same question in a dialog and posts `confirmed`)."""
    return render(request, "axon/confirm.html", {"title": title, "change": change, "action": action})


@login_required
@require_POST
def live_revoke(request, pk: int):
    actor = Actor.from_request(request, TrainingRun.Trigger.DASHBOARD)
    if request.POST.get("confirmed") != "yes" and request.user.has_perm("axon.delete_approval"):
        approval = Approval.objects.filter(pk=pk).first()
        if approval is None:
            messages.error(request, "That approval no longer exists.")
            return redirect("live-telemetry")
        return _confirmation(request, title=f"Revoke the approval of {approval.name} on {approval.hostname}?",
                             action="Revoke", change=revoke_change(approval_json(approval)))
    try:
        approval = approval_revoke(actor=actor, approval_id=pk)
    except Denied as exc:
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
    if request.POST.get("confirmed") != "yes" and request.user.has_perm("axon.activate_modelversion"):
        target = ModelVersion.objects.filter(version=version).first()
        if target is None:
            messages.error(request, f"There is no model v{version}.")
            return redirect("live-telemetry")
        active = ModelVersion.objects.filter(is_active=True).first()
        return _confirmation(request, title=f"Activate model v{version}?", action=f"Activate v{version}",
                             change=activate_change(version_json(target), active.version if active else None))
    try:
        model_version_activate(version=version, actor=Actor.from_request(request, TrainingRun.Trigger.DASHBOARD))
    except Denied as exc:
        raise PermissionDenied(str(exc)) from None
    except ModelVersion.DoesNotExist:
        messages.error(request, f"There is no model v{version}.")
    except (ArtifactError, ValueError) as exc:
        messages.error(request, f"Model v{version} was not activated: {exc}")
    else:
        messages.success(request, f"Model v{version} is now active.")
    return redirect("live-telemetry")


def revoke_change(approval: dict) -> list[str]:
    """What revoking changes, in the words the confirmation (page or dialog) uses."""
    what = approval["name"] + (f" running {approval['script']}" if approval.get("script") else "")
    return [f"{what} on {approval['hostname']} (under {approval['parent'] or 'no parent'}) is no longer approved.",
            "What it did while approved is flagged again and left out of training; it is not ticked by default "
            "until someone triages it.",
            "The active model still lets it through until the next model version."]


def activate_change(target: dict, active: int | None) -> list[str]:
    return [f"Model v{target['version']} (trained {target['trained_at']:%Y-%m-%d %H:%M} UTC on "
            f"{target['records']:,} records) scores everything from now on"
            + (f", in place of v{active}." if active else "."),
            "Recent anomalies are re-scored by it, so past counts on this page change.",
            "Nothing is retrained; you can activate another version the same way."]

"""The Live Telemetry page: server-rendered, refreshed by polling one small JSON view."""
from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

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


class Panel(Protocol):
    """A part of the Live page an app above telemetry owns (axon's model panel), registered in its AppConfig.ready."""

    def state(self, user) -> dict:
        """Merged into what the page polls; its "fragments" are merged into the page's."""

    def page(self, user) -> dict:
        """Only for the first render (the modal's list, say)."""


panels: list[Panel] = []


def live_state(user) -> dict:
    rows, _ = anomalies_list(status="open", limit=25)
    state: dict = {
        "summary": telemetry_summary(),
        "anomalies": [anomaly_json(r) for r in rows],
        "activity": activity_24h(),
        "now": timezone.now(),
        # The tables are rendered on the server only, and the script swaps them in: one renderer.
        "fragments": {},
    }
    for panel in panels:
        part = panel.state(user)
        state["fragments"].update(part.pop("fragments", {}))
        state.update(part)
    return state


@login_required
def live_telemetry(request):
    _require_viewer(request)
    state = live_state(request.user)
    page = {k: v for panel in panels for k, v in panel.page(request.user).items()}
    return render(request, "telemetry/live.html", {
        **state, **page, "live": {k: v for k, v in state.items() if k != "fragments"},
        "window_days": settings.TRAINING_WINDOW_DAYS,
    })


@login_required
def live_data(request):
    """What the page polls every 5 seconds."""
    _require_viewer(request)
    return JsonResponse(live_state(request.user), encoder=JSONEncoder)



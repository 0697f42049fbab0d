"""The Live Telemetry page: rendered on the server, refreshed by polling for its parts rendered the same way."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.http import JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from telemetry.hosts import hosts_late
from telemetry.models import Snapshot
from telemetry.selectors import telemetry_summary


def _require_viewer(request) -> None:
    if not request.user.has_perm("telemetry.view_snapshot"):
        raise PermissionDenied("You need the Analyst or Security Admin role to view telemetry.")


def activity_24h(*, hostname: str = "") -> list[dict]:
    """Snapshots and anomalies per hour over the last 24 hours (of one host, if named), oldest first, with empty hours filled."""
    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    snapshots = Snapshot.objects.filter(endpoint__hostname=hostname) if hostname else Snapshot.objects.all()
    rows = (
        snapshots.filter(timestamp__gte=start).order_by()
        .annotate(hour=TruncHour("timestamp")).values("hour")
        # Snapshots are counted, not the carriers of process-start events; anomalies of both.
        .annotate(snapshots=Count("id", filter=Q(source=Snapshot.Source.SNAPSHOT)), anomalies=Sum("anomaly_count"),
                  model=Max("model_number"))
    )
    by_hour = {r["hour"]: r for r in rows}
    return [
        {"hour": start + timedelta(hours=i),
         "snapshots": by_hour.get(start + timedelta(hours=i), {}).get("snapshots", 0),
         "anomalies": by_hour.get(start + timedelta(hours=i), {}).get("anomalies", 0) or 0,
         "model": by_hour.get(start + timedelta(hours=i), {}).get("model")}
        for i in range(24)
    ]


@dataclass(frozen=True)
class Section:
    """A part of the Live page a panel renders itself, from the page's context; the ids of its live parts are in its
    template, so telemetry's page names none of them."""

    template: str
    place: str = "main"
    """Where on the page: "top" (under the fleet's figures) or "main" (below telemetry's chart and snapshots)."""


class Panel(Protocol):
    """A part of the Live page an app above telemetry owns (axon's model panel), registered in its AppConfig.ready."""

    sections: list[Section]
    """What it adds to the page, in order; the page includes them where each one's place is."""

    fragments: dict[str, str]
    """Its live parts: the id of the element (in one of its sections) each fills, and the template that renders it."""

    def context(self, user) -> dict:
        """What its templates show, on the first render and on every poll."""

    def page(self, request) -> dict:
        """Only for the first render (the modal's list, say)."""


panels: list[Panel] = []

# Telemetry's live parts of the page (a panel adds its own): the id of the element each one fills, and
# its template. The page includes these templates on its first render; the poll renders the same ones
# from the same context and the script swaps them in by id. One renderer: the script builds nothing.
LIVE_FRAGMENTS = {
    "updated-at": "telemetry/_updated.html",
    "figures": "telemetry/_figures.html",
    "activity-chart": "telemetry/_activity.html",
    "snapshots-body": "telemetry/_snapshots.html",
    "late-hosts": "telemetry/_late_hosts.html",
}


# Where an hour's anomaly bar leads (the alerts of that hour): an app above telemetry sets it (axon: its
# alerts workspace); without one the bars lead nowhere.
hour_link: Callable[[datetime, str], str] | None = None


def _nice(top: int) -> int:
    """The axis's top: 1, 2 or 5 times a power of ten, at or above the tallest bar."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= top:
                return m * step
        step *= 10


def activity_chart(activity: list[dict], *, width: int = 600, height: int = 160, pad: int = 36,
                   hostname: str = "") -> dict:
    """The 24 h chart's geometry (an inline SVG): snapshots and anomalies an hour as two bars on one scale,
    with a labelled axis (two scales side by side read as one, and misled)."""
    top = _nice(max([1, *(h["snapshots"] for h in activity), *(h["anomalies"] for h in activity)]))
    step = (width - pad) / len(activity)
    base = height - 20

    def bar(x: float, value: int) -> dict:
        y = base - value / top * (base - 16)
        return {"x": round(x, 2), "y": round(y, 2), "width": round(step / 2 - 1, 2), "height": round(base - y, 2)}

    hours = [{**h, "snap": bar(pad + i * step + 1, h["snapshots"]),
              "anom": bar(pad + i * step + step / 2, h["anomalies"]),
              "link": hour_link(h["hour"], hostname) if hour_link and h["anomalies"] else "",
              "label_x": round(pad + i * step, 2) if i % 6 == 0 else None}
             for i, h in enumerate(activity)]
    ticks = [{"value": v, "y": round(base - v / top * (base - 16), 2)} for v in (0, top // 2, top)]
    models = {h.get("model") for h in activity if h.get("model")}
    return {"width": width, "height": height, "pad": pad, "axis_y": base, "label_y": height - 4, "top": top,
            "ticks": ticks, "hours": hours, "model": max(models) if models else None}


def live_context(user) -> dict:
    """What the page's live parts show: the first render and every poll use this, so they cannot differ."""
    context = {"summary": telemetry_summary(), "chart": activity_chart(activity_24h()), "now": timezone.now(),
               "late_hosts": hosts_late()}
    for panel in panels:
        context.update(panel.context(user))
    return context


def live_templates() -> dict[str, str]:
    return {**LIVE_FRAGMENTS, **{key: name for panel in panels for key, name in panel.fragments.items()}}


def live_fragments(request, context: dict) -> dict[str, str]:
    """Every live part of the page, rendered (with the request, so that their forms carry a CSRF token)."""
    return {key: render_to_string(name, context, request=request) for key, name in live_templates().items()}


@login_required
def live_telemetry(request):
    _require_viewer(request)
    context = live_context(request.user)
    page = {k: v for panel in panels for k, v in panel.page(request).items()}
    sections: dict[str, list[str]] = {"top": [], "main": []}
    for panel in panels:
        for section in panel.sections:
            sections[section.place].append(section.template)
    return render(request, "telemetry/live.html", {**context, **page, "sections": sections})


@login_required
def live_data(request):
    """What the page polls: its live parts, rendered, in one answer (the script swaps each in by id)."""
    _require_viewer(request)
    return JsonResponse({"fragments": live_fragments(request, live_context(request.user))})

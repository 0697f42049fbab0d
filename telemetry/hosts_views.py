"""The hosts pages: every host with its late badge, and one host's page (its last snapshot, its activity, its alerts).

A host's alerts are axon's: axon registers a panel here (AxonConfig.ready) that renders its own template.
"""
from __future__ import annotations

from typing import Protocol

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.template.loader import render_to_string

from telemetry.hosts import host_get, host_last_snapshot, host_recent_starts, hosts_list
from telemetry.views import _require_viewer, activity_24h, activity_chart

LATE_CHOICES = {"": None, "true": True, "false": False}


class HostPanel(Protocol):
    """A part of the host page that an app above telemetry owns (axon's alerts of the host)."""

    template: str

    def context(self, user, hostname: str) -> dict:
        """What its template shows for this host."""


host_panels: list[HostPanel] = []


@login_required
def hosts_page(request):
    _require_viewer(request)
    late = request.GET.get("late", "")
    q = request.GET.get("q", "").replace("\x00", "")[:255]
    # A filter value the form does not offer (a hand-edited address) shows every host, and says so.
    unknown = late not in LATE_CHOICES
    hosts = hosts_list(late=None if unknown else LATE_CHOICES[late], q=q)
    return render(request, "telemetry/hosts.html", {"hosts": hosts, "late": "" if unknown else late, "q": q,
                                                    "unknown_filter": unknown})


@login_required
def host_page(request, hostname: str):
    _require_viewer(request)
    host = host_get(hostname=hostname)
    if host is None:
        raise Http404(f"No host called {hostname} has reported.")
    panels = [render_to_string(p.template, p.context(request.user, host.hostname), request=request) for p in host_panels]
    return render(request, "telemetry/host.html", {
        "host": host, "last_snapshot": host_last_snapshot(host=host), "starts": host_recent_starts(host=host),
        "chart": activity_chart(activity_24h(hostname=host.hostname), hostname=host.hostname), "panels": panels,
    })

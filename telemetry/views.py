from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from telemetry.services import telemetry_summary


@login_required
def live_telemetry(request):
    if not request.user.has_perm("telemetry.view_snapshot"):
        raise PermissionDenied("You need the Analyst or Security Admin role to view telemetry.")
    return render(request, "telemetry/live.html", {"summary": telemetry_summary()})

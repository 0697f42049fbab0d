"""The alerts workspace and an alert's page: server-rendered, filters in the address, forms that work without JavaScript.

They read through the same services as GET /api/axon/alerts/ and /api/axon/alerts/<key>/, and triage
through the same `alerts_triage` as the API.
"""
from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.actors import InvalidInput
from axon.api import alert_detail_json, candidate_json, flood_json
from axon.models import Alert
from axon.selectors import AlertQuery, alert_detail, alerts_search
from axon.views import triage_form

PAGE_SIZE = 20
DETAIL_PAGE_SIZE = 50
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# The workspace's own parameters: kept through triage, sorting and paging (and nothing else is).
FILTERS = ("status", "hostname", "risk", "q", "range", "since", "until", "ordering")
ORDERING_LABELS = {"severity": "Severity", "-last_seen": "Last seen", "-count": "Count", "hostname": "Host"}


def _require_viewer(request) -> None:
    if not request.user.has_perm("axon.view_trainingrun"):
        raise PermissionDenied("You need the Analyst or Security Admin role to view alerts.")


def _filters(params) -> QueryDict:
    """Only the workspace's filters, without empty ones: what the address carries from page to page."""
    kept = QueryDict(mutable=True)
    for name in FILTERS:
        if value := params.get(name, ""):
            kept[name] = value
    return kept


def _page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


@login_required
def alerts_page(request):
    _require_viewer(request)
    filters = _filters(request.GET)
    number = _page_number(request.GET.get("page"))
    rows: list = []
    floods: list = []
    total, error = 0, ""
    window = filters.get("range", "")
    try:
        if window and window not in RANGES:
            raise InvalidInput(f"range must be one of {', '.join(RANGES)}.", {"range": ["unknown value"]})
        given = {"since": timezone.now() - RANGES[window]} if window else {}  # else since/until as written
        query = AlertQuery.from_params(filters, **given)
        rows, total, floods = alerts_search(query=query, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    except InvalidInput as exc:
        error = exc.detail
    first = (number - 1) * PAGE_SIZE + 1

    def with_params(**changes) -> str:
        params = filters.copy()
        for name, value in changes.items():
            params.pop(name, None)
            if value:
                params[name] = str(value)
        return f"?{params.urlencode()}" if params else "?"

    context = {
        "alerts": [candidate_json(c) for c in rows], "floods": [flood_json(f) for f in floods],
        "total": total, "first": first, "last": first + len(rows) - 1,
        "previous_url": with_params(page=number - 1 if number > 2 else None) if number > 1 else None,
        "next_url": with_params(page=number + 1) if first + len(rows) - 1 < total else None,
        "sort_links": [{"label": label, "value": value, "url": with_params(ordering=None if value == "severity" else value),
                        "current": (filters.get("ordering") or "severity") == value}
                       for value, label in ORDERING_LABELS.items()],
        "filters": filters, "query_string": filters.urlencode(), "error": error,
        "statuses": [*Alert.Status.values, "all"], "ranges": list(RANGES),
        "can_triage": request.user.has_perm("axon.triage_alert"),
    }
    return render(request, "axon/alerts.html", context, status=400 if error else 200)


@login_required
def alert_page(request, key: str):
    _require_viewer(request)
    number = _page_number(request.GET.get("page"))
    detail = alert_detail(key=key, offset=(number - 1) * DETAIL_PAGE_SIZE, limit=DETAIL_PAGE_SIZE)
    if detail is None:
        raise Http404("No alert has this key: a newer model may have cleared it. Look for it by host or name in the alerts list.")
    body = alert_detail_json(detail)
    first = (number - 1) * DETAIL_PAGE_SIZE + 1
    return render(request, "axon/alert.html", {
        "a": body, "first": first, "last": first + len(body["observations"]) - 1,
        "previous_url": f"?page={number - 1}" if number > 1 else None,
        "next_url": f"?page={number + 1}" if detail["more"] else None,
        "back": _filters(QueryDict(request.GET.get("back", ""))).urlencode(),
        "can_triage": request.user.has_perm("axon.triage_alert"),
    })


@login_required
@require_POST
def alerts_triage_page(request):
    """Triage the ticked alerts, then go back where the person was: the same filtered list, or the alert's page."""
    keys = request.POST.getlist("key")
    updated = triage_form(request, empty="Tick at least one alert first.")
    if updated is not None:
        status = request.POST.get("status", "")
        messages.success(request, f"{len(updated)} alert{'s' if len(updated) != 1 else ''} marked {status}.")
    if request.POST.get("return") == "alert" and len(keys) == 1:
        return redirect("alert", key=keys[0])
    filters = _filters(QueryDict(request.POST.get("filters", "")))
    return redirect(reverse("alerts") + (f"?{filters.urlencode()}" if filters else "") + "#results")


def alerts_of_hour(hour, hostname: str = "") -> str:
    """Where the Live page's chart sends a click on an hour's anomalies: every alert seen in that hour."""
    params = QueryDict(mutable=True)
    params.update({"status": "all", "since": hour.isoformat(), "until": (hour + timedelta(hours=1)).isoformat()})
    if hostname:
        params["hostname"] = hostname
    return f"{reverse('alerts')}?{params.urlencode()}"

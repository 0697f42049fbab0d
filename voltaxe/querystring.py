"""Refuse a NUL character in the path or the query string before any view, filter or admin search sees it.

PostgreSQL text cannot hold NUL: a filter, a search or a lookup carrying one failed in the database
driver (a 500 on PostgreSQL, a silent miss on SQLite). One check here covers every parameter of
every view, the admin's included, instead of one in each.
"""
from __future__ import annotations

from django.http import HttpResponseBadRequest, JsonResponse

from voltaxe.views import wants_json

NUL = "\x00"


def nul_refusal(request) -> tuple[str, dict] | None:
    """The sentence (and DRF-style errors) for a NUL in the path or the query string, or None."""
    if NUL in request.path_info:
        return "The path contains a NUL character, which is not allowed; remove it.", {}
    raw = request.META.get("QUERY_STRING", "")
    if "%00" not in raw and NUL not in raw:  # the common case costs one scan of the raw string
        return None
    for name, values in request.GET.lists():
        if NUL in name:
            return "A query parameter's name contains a NUL character, which is not allowed; remove it.", {}
        if any(NUL in value for value in values):
            return (f"{name} contains a NUL character, which no query parameter may hold; remove it.",
                    {name: ["must not contain a NUL character"]})
    return None  # "%2500": the text "%00", not a NUL


class NulRefusalMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refusal = nul_refusal(request)
        if refusal is None:
            return self.get_response(request)
        detail, errors = refusal
        if wants_json(request):
            return JsonResponse({"detail": detail, **({"errors": errors} if errors else {})}, status=400)
        return HttpResponseBadRequest(detail, content_type="text/plain; charset=utf-8")

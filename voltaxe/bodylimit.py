"""A body limit for every route, enforced before anything reads or parses the body.

Parsing JSON costs far more memory than its bytes: `[{},{},…]` is one dict of ~64 bytes per 3 bytes
sent, so a 32 MiB body took ~800 MB in a worker, and a request is kept in reference cycles (Django's
message storage, DRF's Request and its view) until CPython's full collection, which counts objects
rather than bytes and so may not come for many requests. Each route therefore gets the smallest limit
its largest real body needs (README, "Production"): judged from Content-Length before a byte is read,
and for a chunked body (no length announced) by reading at most one byte more than the limit.
"""
from __future__ import annotations

import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpResponse, JsonResponse

from voltaxe.views import wants_json

SNAPSHOT = ("INGEST_MAX_BODY_BYTES", "Send fewer processes per snapshot or shorter command lines; nothing was stored.")
BATCH = ("INGEST_BATCH_MAX_BODY_BYTES", "Split the batch into smaller ones (fewer snapshots each); nothing was stored.")
EVENTS = ("INGEST_BATCH_MAX_BODY_BYTES", "Send fewer events or records per request; nothing was stored.")
AUTH = ("AUTH_MAX_BODY_BYTES", "Send only the user name and password, or the token.")
OTHER = ("MAX_BODY_BYTES", "Send a smaller request; nothing was stored.")

# Path → (setting that holds the limit in bytes, what the sender should do). Every other path: OTHER.
ROUTES = {
    "/api/telemetry/snapshots/": SNAPSHOT,
    "/ingest/process-snapshot": SNAPSHOT,
    "/api/telemetry/snapshots/batch/": BATCH,
    # 1,000 events with long command lines (a Sysmon record with its fields is 1-3 KiB, 32 KiB at most).
    "/api/telemetry/events/": EVENTS,
    "/api/telemetry/events/sysmon/": EVENTS,
    "/api/telemetry/events/ecs/": EVENTS,
    # The Sentinel's other reports: a host report carries a process list; the rest are answered unread.
    "/ingest/snapshot": SNAPSHOT,
    "/ingest/network-snapshot": SNAPSHOT,
    "/ingest/suspicious_event": SNAPSHOT,
    "/ingest/rootkit_event": SNAPSHOT,
    "/ingest/vulnerability_event": SNAPSHOT,
    # They answer without authentication: a few hundred bytes is all they need.
    "/api/auth/token/": AUTH,
    "/api/auth/token/refresh/": AUTH,
    "/api/auth/logout/": AUTH,
    "/login/": AUTH,
    "/admin/login/": AUTH,
}

CHUNK = 64 * 1024


class BodyLimitMiddleware:
    """First in MIDDLEWARE, so that nothing below it (CSRF reads request.POST) sees a body over the limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        setting, advice = ROUTES.get(request.path_info, OTHER)
        limit = getattr(settings, setting)
        meta = request.META
        try:
            announced = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            announced = 0  # Django then reads nothing either
        if announced > limit:
            return too_large(request, limit, advice)
        if not announced and "HTTP_TRANSFER_ENCODING" in meta and meta.get("wsgi.input_terminated"):
            # Chunked: no length to judge by, and Django alone would read nothing of it. The server
            # (gunicorn) ends the stream at the last chunk, so read up to one byte past the limit.
            body = read_at_most(meta["wsgi.input"], limit + 1)
            if len(body) > limit:
                return too_large(request, limit, advice)
            meta["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))
        # A Content-Length under the limit is all Django reads (LimitedStream), whatever follows it.
        response = self.get_response(request)
        if getattr(request, "_read_started", False):
            # For gunicorn.conf.py: only a body that was read and parsed is worth a collection, not a
            # large Content-Length announced to a refusal that read nothing.
            meta["voltaxe.body_read"] = True
        if getattr(response, "is_rendered", False) and getattr(response, "renderer_context", None) is not None:
            # DRF's rendered Response still points to its view and Request, and so to the parsed body, for
            # as long as the server holds the response: past gunicorn's post_request, whose collection
            # (gunicorn.conf.py) then freed nothing of a 32 MiB body. Rendered, it needs neither.
            response.renderer_context = None
        return response


def read_at_most(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = stream.read(min(CHUNK, size - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def too_large(request, limit: int, advice: str) -> HttpResponse:
    detail = f"The request body is too large: this endpoint accepts at most {limit} bytes. {advice}"
    if wants_json(request):
        return JsonResponse({"detail": detail}, status=413)
    return HttpResponse(detail, status=413, content_type="text/plain; charset=utf-8")

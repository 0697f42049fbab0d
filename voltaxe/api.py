"""What every API view shares: permissions, query parsing, error bodies."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def require_perm(perm: str, message: str) -> type[BasePermission]:
    """A permission class: an authenticated user holding `perm` (superusers hold all)."""

    class HasPerm(BasePermission):
        def has_permission(self, request, view) -> bool:
            user = request.user
            # An agent key's principal holds no permission (its has_perm is always False).
            return bool(user and user.is_authenticated and user.has_perm(perm))

    HasPerm.message = message
    HasPerm.__name__ = f"HasPerm_{perm.replace('.', '_')}"
    return HasPerm


CanViewTelemetry = require_perm(
    "telemetry.view_snapshot", "You need the Analyst or Security Admin role to view telemetry."
)


class BadRequest(exceptions.APIException):
    """A 400 whose body is the contract's {"detail": sentence, "errors": {field: [messages]}}."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, errors: dict | None = None):
        super().__init__(detail)
        self.text = detail
        self.errors = errors or {}


def parse_since(value: str | None) -> datetime | None:
    """The `since` filter of every list: an ISO 8601 time, taken as UTC without an offset, returned in UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace(" ", "+"))  # a '+' arrives as a space
        # In UTC here, so that the database never sees a time it cannot hold (year 10000 once converted).
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise BadRequest("since must be an ISO 8601 time such as 2026-11-26T09:00:00Z.", {"since": ["not a time"]}) from None
    except OverflowError:
        raise BadRequest("since must fall between the years 1 and 9999 once converted to UTC.",
                         {"since": ["out of range"]}) from None


def query_text(params, name: str, *, max_length: int = 255) -> str:
    """A text filter from the query string; PostgreSQL cannot compare with a NUL, so it is refused here."""
    value = params.get(name, "")
    if "\x00" in value or len(value) > max_length:
        raise BadRequest(f"{name} must be text of at most {max_length} characters without NUL bytes.",
                         {name: ["not a valid filter"]})
    return value


def parse_int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise BadRequest(f"{name} must be a whole number from {lo} to {hi}.", {name: ["out of range"]})
    return number


def next_page_url(request, offset: int, limit: int, more: bool) -> str | None:
    if not more:
        return None
    params = request.query_params.copy()
    params["offset"], params["limit"] = str(offset + limit), str(limit)
    return request.build_absolute_uri(request.path) + "?" + params.urlencode()



def service_unavailable(exc) -> Response | None:
    """A database or cache outage is the client's cue to retry, not a crash: 503 with Retry-After."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):
        what = "The database is unavailable"
    elif type(exc).__module__.startswith(("redis", "django_redis")) or "ConnectionInterrupted" in type(exc).__name__:
        what = "The cache (Redis) is unavailable"
    else:
        return None
    logger.error("%s: %s", what, exc)
    return Response({"detail": f"{what}; nothing was stored. Retry in a few seconds."},
                    status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})


def exception_handler(exc, context):
    """DRF's handler, with the contract's wording and JSON for what Django would answer in HTML."""
    unavailable = service_unavailable(exc)
    if unavailable is not None:
        return unavailable
    if isinstance(exc, exceptions.NotAuthenticated):
        exc = exceptions.NotAuthenticated("Not authenticated")
    if isinstance(exc, BadRequest):
        return Response({"detail": exc.text, "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "The request body is too large. Send fewer processes or snapshots per request."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, RecursionError):
        return Response({"detail": "The JSON is nested too deeply. Send a flat snapshot object or list.", "errors": {}},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return Response(
            {"detail": f"The body is not valid JSON ({exc.detail}). Send a JSON document with Content-Type: application/json.",
             "errors": {}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(
            {"detail": "Send the body as JSON with Content-Type: application/json.", "errors": {}},
            status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, Http404) and response.data.get("detail") == "Not found.":
        response.data["detail"] = "Not found. Check the id in the address."
    return response

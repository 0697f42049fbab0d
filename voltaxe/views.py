from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.tokens import UntypedToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView, TokenViewBase

from voltaxe.api import BadRequest
from voltaxe.ratelimits import login_rate_limit_hit, rate_limit_hit
from voltaxe.schema import (
    RETRY_AFTER,
    AccessToken,
    Detail,
    Health,
    RefreshIn,
    TokenObtainIn,
    TokenPair,
    refusals,
)
from voltaxe.tokens import RefreshToken

logger = logging.getLogger(__name__)


def worker_alive() -> bool:
    from django_q.status import Stat

    try:
        return bool(Stat.get_all())
    except Exception:
        logger.exception("Could not read the task queue's cluster status")
        return False


# What the apps add to /healthz ({"active_model": ...} from axon), registered in their AppConfig.ready.
health_probes: dict[str, Callable[[], object]] = {}


@extend_schema(responses={200: Health, 503: OpenApiResponse(Health, "The database does not answer: `database` says why.")})
@api_view(["GET"])  # a DRF view so that the schema lists it
@authentication_classes([])
@permission_classes([AllowAny])
def healthz(request):
    """Liveness for load balancers and people: 200 while the database answers, 503 when it does not."""
    body = {"status": "ok", "database": "ok", "worker": "ok" if worker_alive() else "down", "active_model": None}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        body.update({name: probe() for name, probe in health_probes.items()})
    except Exception as exc:
        body.update(status="error", database=f"error: {exc.__class__.__name__}")
        return JsonResponse(body, status=503)
    return JsonResponse(body)


# --- errors ---------------------------------------------------------------------------------


def wants_json(request) -> bool:
    """The API and agents get JSON; only a browser asking for a page gets HTML."""
    return request.path.startswith("/api/") or "text/html" not in request.headers.get("Accept", "")


def _error(status_code: int, detail: str, page):
    def handler(request, exception=None):
        if wants_json(request):
            # A refusal's own sentence is meant for the user; other exceptions' texts are not.
            said = str(exception or "") if status_code == 403 else ""
            return JsonResponse({"detail": said or detail}, status=status_code)
        return page(request) if status_code == 500 else page(request, exception)

    return handler


bad_request = _error(400, "The request is malformed and was refused; nothing was stored.", defaults.bad_request)
permission_denied = _error(403, "You are not allowed to do this.", defaults.permission_denied)
page_not_found = _error(404, "Nothing is at this address; check the path and its trailing slash.", defaults.page_not_found)
server_error = _error(500, "The server failed on this request; it has been logged. Try again, and tell an "
                           "administrator if it keeps failing.", defaults.server_error)


# --- the log-in doors -------------------------------------------------------------------------


def login_form_limited(view):
    """A log-in form (the page's or the admin's) under the shared log-in limits: 429 with a page that says how long to wait."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            hit = login_rate_limit_hit(request, request.POST.get("username", ""))
            if hit is not None:
                wait, detail = hit
                response = render(request, "registration/login_limited.html",
                                  {"detail": detail, "login_path": request.get_full_path()}, status=429)
                response["Retry-After"] = str(wait)
                add_never_cache_headers(response)
                return response
        return view(request, *args, **kwargs)

    return wrapped


site_login = login_form_limited(LoginView.as_view(redirect_authenticated_user=True))


def too_many(wait: int, detail: str) -> Response:
    return Response({"detail": detail, "retry_after": wait}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(wait)})


def address_limited(request) -> Response | None:
    """Refresh and logout need no password: a budget per address (AUTH_ADDRESS_RATE) keeps them cheap to answer."""
    wait = rate_limit_hit(request, group="auth.refresh", rate=settings.AUTH_ADDRESS_RATE, key="ip")
    if wait is None:
        return None
    return too_many(wait, f"Too many token requests from this address. Try again in {wait} seconds.")


class TokenObtainView(TokenObtainPairView):
    """JWT login, under the same limits as the log-in forms."""

    @extend_schema(request=TokenObtainIn, parameters=[RETRY_AFTER], responses={200: TokenPair, **refusals(400, 401, 429, said={
        401: "No active account with these credentials."})})
    def post(self, request, *args, **kwargs):
        username = request.data.get("username", "") if isinstance(request.data, dict) else ""
        hit = login_rate_limit_hit(request, username)
        if hit is not None:
            return too_many(*hit)
        return super().post(request, *args, **kwargs)


class TokenRefreshLimitedView(TokenRefreshView):
    @extend_schema(request=RefreshIn, parameters=[RETRY_AFTER], responses={200: AccessToken, **refusals(400, 401, 429, said={
        401: "The refresh token is invalid, expired or logged out."})})
    def post(self, request, *args, **kwargs):
        limited = address_limited(request)
        return limited if limited is not None else super().post(request, *args, **kwargs)


class LogoutView(TokenViewBase):
    """Blacklist a refresh token; the access tokens issued from it are refused from then on (voltaxe.tokens)."""

    @extend_schema(request=RefreshIn, parameters=[RETRY_AFTER], responses={200: Detail, **refusals(400, 401, 429, said={
        401: "Not a refresh token, or an invalid or expired one."})})
    def post(self, request):
        limited = address_limited(request)
        if limited is not None:
            return limited
        raw = request.data.get("refresh") if isinstance(request.data, dict) else None
        if not isinstance(raw, str) or not raw:
            raise BadRequest('Send the refresh token to log out: {"refresh": "<token>"}.', {"refresh": ["required"]})
        try:
            # Signature and expiry, not the blacklist: logging out twice is not an error.
            token_type = UntypedToken(raw).get("token_type")
        except TokenError as exc:
            raise InvalidToken(str(exc)) from None
        if token_type != "refresh":
            raise AuthenticationFailed("Send the refresh token, not the access token, to log out.")
        RefreshToken(raw, verify=False).blacklist()
        return Response({"detail": "Logged out: this refresh token and the access tokens issued from it no longer work."})

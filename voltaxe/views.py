from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.http import JsonResponse
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from voltaxe.ratelimits import rate_limit_hit

logger = logging.getLogger(__name__)


def worker_alive() -> bool:
    from django_q.status import Stat

    try:
        return bool(Stat.get_all())
    except Exception:
        logger.exception("Could not read the task queue's cluster status")
        return False


@api_view(["GET"])  # a DRF view so that the schema lists it
@authentication_classes([])
@permission_classes([AllowAny])
def healthz(request):
    """Liveness for load balancers and people: 200 while the database answers, 503 when it does not."""
    from axon.scoring import model_cache

    body = {"status": "ok", "database": "ok", "worker": "ok" if worker_alive() else "down", "active_model": None}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        body["active_model"], _ = model_cache.get()
    except Exception as exc:
        body.update(status="error", database=f"error: {exc.__class__.__name__}")
        return JsonResponse(body, status=503)
    return JsonResponse(body)


class RateLimitedTokenObtainPairView(TokenObtainPairView):
    """JWT login, limited per client address against password guessing."""

    def post(self, request, *args, **kwargs):
        wait = rate_limit_hit(request, group="auth.token", rate=settings.TOKEN_RATE, key="ip")
        if wait is not None:
            return Response(
                {"detail": f"Too many login attempts from this address. Try again in {wait} seconds.", "retry_after": wait},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(wait)},
            )
        return super().post(request, *args, **kwargs)


class TokenRefreshForExistingUserView(TokenRefreshView):
    """simplejwt looks the user up while refreshing and lets DoesNotExist escape as a 500."""

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ObjectDoesNotExist:
            return Response({"detail": "The user of this token no longer exists. Log in again."},
                            status=status.HTTP_401_UNAUTHORIZED)

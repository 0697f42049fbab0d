"""Rate limits through django-ratelimit, checked inside handlers so that DRF has authenticated the user first."""
from __future__ import annotations

from django_ratelimit import ALL
from django_ratelimit.core import get_usage


def _constant(group, request) -> str:
    return "all"


def rate_limit_hit(request, *, group: str, rate: str, key: str = "user") -> int | None:
    """Count this request against `rate`; the seconds to wait if it is over the limit, else None.

    key: "user" (the authenticated user), "ip", or "all" (one budget shared by everyone).
    """
    usage = get_usage(
        request, group=group, key=_constant if key == "all" else key, rate=rate, method=ALL, increment=True
    )
    if usage and usage["should_limit"]:
        return max(1, int(usage["time_left"]))
    return None

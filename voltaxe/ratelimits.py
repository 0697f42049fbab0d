"""Rate limits through django-ratelimit, checked inside handlers so that DRF has authenticated the user first."""
from __future__ import annotations

import ipaddress

from django.conf import settings
from django.dispatch import Signal
from django_ratelimit import ALL
from django_ratelimit.core import get_usage

from voltaxe.clientip import rate_limit_ip

# Sent (request, username, reason) when a log-in attempt is refused by a limit; the audit app records it.
login_rate_limited = Signal()


def _constant(group, request) -> str:
    return "all"


def rate_limit_hit(request, *, group: str, rate: str, key="user") -> int | None:
    """Count this request against `rate`; the seconds to wait if it is over the limit, else None.

    key: "user" (the authenticated user), "ip" (the client address, see voltaxe.clientip), "all" (one
    budget shared by everyone), or a callable (group, request) -> str.
    """
    usage = get_usage(
        request, group=group, key=_constant if key == "all" else key, rate=rate, method=ALL, increment=True
    )
    if usage and usage["should_limit"]:
        return max(1, int(usage["time_left"]))
    return None


def _address(request) -> str:
    """The client address as django-ratelimit's "ip" key counts it (an IPv6 client by its /64)."""
    ip = rate_limit_ip(request)
    if ":" in ip:
        return str(ipaddress.ip_network(f"{ip}/{getattr(settings, 'RATELIMIT_IPV6_MASK', 64)}", strict=False).network_address)
    return ip


def login_rate_limit_hit(request, username) -> tuple[int, str] | None:
    """Count a log-in attempt at any door; (seconds to wait, a sentence) if it is over a limit, else None.

    Per user name and address (TOKEN_RATE): a guesser locks out only that user, and only from the
    guesser's own address. Per address (AUTH_ADDRESS_RATE): one address trying many user names.
    """
    name = username.strip().casefold()[:150] if isinstance(username, str) else ""
    wait = rate_limit_hit(request, group="auth.login", rate=settings.TOKEN_RATE,
                          key=lambda group, r: f"{name}\n{_address(r)}")
    if wait is not None:
        return _refused(request, name, wait, "for this user name from this address")
    wait = rate_limit_hit(request, group="auth.login.address", rate=settings.AUTH_ADDRESS_RATE, key="ip")
    if wait is not None:
        return _refused(request, name, wait, "from this address")
    return None


def _refused(request, name: str, wait: int, which: str) -> tuple[int, str]:
    login_rate_limited.send(sender=None, request=request, username=name, reason=f"too many attempts {which}")
    return wait, f"Too many login attempts {which}. Try again in {wait} seconds."

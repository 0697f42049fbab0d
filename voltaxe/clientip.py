"""The client's address, resolved once per request for the rate limits and the audit log.

Behind a reverse proxy every connection comes from the proxy. X-Forwarded-For says who the proxy
spoke for, but anyone can send that header, so it is read only when the peer is listed in
TRUSTED_PROXIES, and then the client is the right-most address in it that is not a trusted proxy
itself: what the nearest trusted proxy saw. Everything left of that was written by the client.
An entry may carry the client's port (`203.0.113.7:51234`, `[2001:db8::1]:443`); the address is what counts.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values, *, setting: str = "TRUSTED_PROXIES") -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{setting} holds addresses or networks such as 10.0.0.5 or 10.0.0.0/8, not {value!r}."
            ) from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def _without_port(text: str) -> str | None:
    """'203.0.113.7:51234' or '[2001:db8::1]:443' without the port, a bare address as it is; None for a bad port."""
    if text.startswith("["):  # only IPv6 is bracketed, with or without a port after it
        host, bracket, rest = text[1:].partition("]")
        port_ok = rest == "" or (rest[:1] == ":" and _is_port(rest[1:]))
        return host if bracket and port_ok and ":" in host else None
    host, colon, port = text.partition(":")
    if colon and "." in host and ":" not in port:  # IPv4:port; a bare IPv6 address has more than one colon
        return host if _is_port(port) else None
    return text


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= 65535


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = _without_port(text.strip())
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    # An IPv4 client seen through a dual-stack socket is still that IPv4 client.
    return getattr(address, "ipv4_mapped", None) or address


def resolve_client_ip(meta: dict) -> str | None:
    trusted = _trusted(tuple(settings.TRUSTED_PROXIES))
    peer = _address(meta.get("REMOTE_ADDR") or "")
    # No peer address is a Unix socket: only a local process (the proxy) can have connected.
    if not trusted or (peer is not None and not any(peer in net for net in trusted)):
        return str(peer) if peer else None
    client = peer
    for hop in reversed([hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]):
        address = _address(hop)
        if address is None:
            # A trusted proxy wrote something that is not an address: the last good hop is all we know.
            break
        client = address
        if not any(address in net for net in trusted):
            break
    return str(client) if client else None


def client_ip(request) -> str | None:
    """The client's address (None when there is no request or no usable address)."""
    if request is None:
        return None
    if not hasattr(request, "client_ip"):
        request.client_ip = resolve_client_ip(request.META)
    return request.client_ip


def rate_limit_ip(request) -> str:
    """django-ratelimit's "ip" key (RATELIMIT_IP_META_KEY): the same address the audit log records."""
    # Without any address (a Unix socket and no trusted proxy) all such requests share one budget.
    return client_ip(request) or "0.0.0.0"


class ClientIPMiddleware:
    """Sets request.client_ip once, before any view, limit or audit record reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.client_ip = resolve_client_ip(request.META)
        return self.get_response(request)

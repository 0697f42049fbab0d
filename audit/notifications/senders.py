"""How each kind of channel is spoken to: one attempt, an answer, never an exception.

Receivers get short timeouts (NOTIFY_TIMEOUT_SECONDS): a receiver that never answers costs a
worker that long per attempt, and ingestion nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail

SYSLOG_FACILITY = 16  # local0
# RFC 5424 severities: critical, warning, notice; informational for what has no severity.
SYSLOG_SEVERITY = {"high": 2, "medium": 4, "low": 5}
CEF_SEVERITY = {"high": 8, "medium": 5, "low": 3}


@dataclass
class Answer:
    delivered: bool
    status: str  # "200", "timeout", "refused", "sent" (syslog over UDP has no answer)
    detail: str = ""
    latency_ms: float = 0.0


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Voltaxe-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def send(channel, payload: dict) -> Answer:
    started = time.monotonic()
    try:
        answer = {"webhook": _webhook, "slack": _slack, "email": _email, "syslog": _syslog}[channel.kind](channel, payload)
    except Exception as exc:  # whatever a receiver or the network does, it is an answer to record
        answer = Answer(False, _status_of(exc), _detail_of(exc))
    answer.latency_ms = round((time.monotonic() - started) * 1000, 1)
    return answer


def _status_of(exc: Exception) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ConnectionRefusedError):
        return "refused"
    return "error"


def _detail_of(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:500]


def _post(url: str, body: bytes, headers: dict) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "Voltaxe", **headers})
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_TIMEOUT_SECONDS) as response:
            said = response.read(500).decode(errors="replace")
            return Answer(200 <= response.status < 300, str(response.status), said)
    except urllib.error.HTTPError as exc:  # a 4xx or 5xx: the receiver answered, and said no
        return Answer(False, str(exc.code), exc.read(500).decode(errors="replace"))


def _webhook(channel, payload: dict) -> Answer:
    body = body_bytes(payload)
    return _post(channel.target, body, {
        "Voltaxe-Event": payload["kind"], "Voltaxe-Delivery": payload["id"],
        "Voltaxe-Signature": signature(channel.secret, int(time.time()), body),
    })


def text(payload: dict) -> str:
    """One line a person reads: the summary and where to look."""
    return payload["summary"] + (f" {payload['url']}" if payload.get("url") else "")


def _slack(channel, payload: dict) -> Answer:
    link = f" <{payload['url']}|open>" if payload.get("url") else ""
    return _post(channel.target, body_bytes({"text": f"{payload['summary']}{link}"}), {})


def _email(channel, payload: dict) -> Answer:
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    details = json.dumps(payload.get("details", {}), indent=2, sort_keys=True)
    sent = send_mail(subject=f"[Voltaxe] {payload['summary']}"[:200], from_email=None, recipient_list=recipients,
                     message=f"{text(payload)}\n\nKind: {payload['kind']}\nAt: {payload['at']}\n"
                             f"Severity: {payload['event']['severity']}\nDelivery: {payload['id']}\n\n{details}\n")
    return Answer(bool(sent), "sent" if sent else "not sent", f"to {len(recipients)} address(es)")


# --- syslog --------------------------------------------------------------------------------


def syslog_line(payload: dict, fmt: str, hostname: str | None = None) -> bytes:
    """One RFC 5424 message: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG."""
    pri = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY.get(payload["event"]["severity"], 6)
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    content = cef(payload) if fmt == "cef" else body_bytes(payload).decode()
    return f"<{pri}>1 {payload['at']} {host} voltaxe - {payload['kind'][:32]} - {content}".encode()


def _cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _cef_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r", " ").replace("\n", " ")


def cef(payload: dict) -> str:
    """ArcSight CEF: CEF:Version|Vendor|Product|Version|Signature ID|Name|Severity|Extension."""
    at = datetime.fromisoformat(payload["at"].replace("Z", "+00:00"))
    ext = {"rt": int(at.timestamp() * 1000), "externalId": payload["id"], "request": payload.get("url", ""),
           "dhost": payload.get("host", {}).get("name", ""), "duser": payload.get("user", {}).get("name", ""),
           "dproc": payload.get("process", {}).get("name", ""), "filePath": payload.get("process", {}).get("executable", ""),
           "msg": payload["summary"]}
    extension = " ".join(f"{k}={_cef_value(v)}" for k, v in ext.items() if v != "")
    severity = CEF_SEVERITY.get(payload["event"]["severity"], 3)
    return f"CEF:0|Voltaxe|Voltaxe|1|{_cef_header(payload['kind'])}|{_cef_header(payload['summary'])}|{severity}|{extension}"


def syslog_address(target: str) -> tuple[str, str, int]:
    """udp|tcp|tls://host:port → (scheme, host, port); ValueError with a sentence otherwise."""
    scheme, sep, rest = target.partition("://")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or scheme not in ("udp", "tcp", "tls") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a syslog target is udp://host:port, tcp://host:port or tls://host:port, e.g. tcp://siem.example:514")
    return scheme, host, int(port)


def _syslog(channel, payload: dict) -> Answer:
    scheme, host, port = syslog_address(channel.target)
    line = syslog_line(payload, channel.format)
    timeout = settings.NOTIFY_TIMEOUT_SECONDS
    if scheme == "udp":
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family[0], socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(line, family[4])
        return Answer(True, "sent", "UDP has no answer")
    # TCP and TLS: octet-counting framing (RFC 6587), which rsyslog's imtcp and most SIEMs read.
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if scheme == "tls" else raw
        sock.sendall(str(len(line)).encode() + b" " + line)
        if scheme == "tls":
            sock.close()
    return Answer(True, "sent", f"{len(line)} bytes over {scheme.upper()}")

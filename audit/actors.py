"""Who acts on a service, through which door, and the two refusals every door translates the same way.

Every mutating service takes an Actor instead of a request; the doors (API, page, admin, command,
task) build one and turn Denied into a 403 and InvalidInput into a 400.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from audit.services import audit_record, client_ip


class Denied(Exception):
    pass


class InvalidInput(Exception):
    def __init__(self, detail: str, errors: dict):
        super().__init__(detail)
        self.detail, self.errors = detail, errors


@dataclass(frozen=True)
class Actor:
    """Who acts, and through which door; the address and user agent are only for the audit log."""

    user: Any = None  # a User, AnonymousUser or an agent principal
    door: str = "command"  # dashboard, api, admin, command or schedule (axon's TrainingRun.Trigger)
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request, door: str) -> Actor:
        return cls(user=request.user, door=door, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", ""))

    def audit(self, action: str, **kwargs) -> None:
        # audit_record reads the address and user agent off a request; hand it just those.
        shim = SimpleNamespace(user=self.user, client_ip=self.ip,  # already resolved behind any trusted proxy
                               META={"REMOTE_ADDR": self.ip, "HTTP_USER_AGENT": self.user_agent})
        audit_record(action=action, actor=self.user, request=shim if self.ip or self.user_agent else None, **kwargs)

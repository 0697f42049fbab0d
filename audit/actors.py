"""Who acts on a service, through which door, and the two refusals every door translates the same way.

Every mutating service takes an Actor instead of a request; the doors (API, page, admin, command,
task) build one and turn Denied into a 403 and InvalidInput into a 400.
"""
from __future__ import annotations

from dataclasses import dataclass
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

    def can(self, permission: str) -> bool:
        """The one permission check: a door without a user (the schedule, an operator's command) has none."""
        return self.user is not None and self.user.has_perm(permission)

    def audit(self, action: str, **kwargs) -> None:
        # The address was resolved once, behind any trusted proxy, when the actor was made.
        audit_record(action=action, actor=self.user, ip=self.ip, user_agent=self.user_agent, **kwargs)

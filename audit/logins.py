"""Every log-in door leaves an audit event: succeeded, failed, refused by the log-in limits.

Receivers of Django's auth signals, so that the page's form, the admin's form and the token
endpoint are audited alike: `authenticate()` sends user_login_failed at every door, `login()`
sends user_logged_in at the forms, voltaxe.tokens sends it for a token issued, and
voltaxe.ratelimits sends login_rate_limited. The resource is the door's path. Only the user name
tried is kept, never the password. Failures and refusals are counted per door, address and
reason with a sample of the user names: a guesser cannot write a row per attempt.
"""
from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver

from audit.models import AuditEvent
from audit.services import audit_record
from voltaxe.ratelimits import login_rate_limited

USERNAME_MAX = 150


def _door(request) -> str:
    return getattr(request, "path", "")[:64]


@receiver(user_logged_in, dispatch_uid="audit_login_succeeded")
def login_succeeded(sender, request, user, **kwargs) -> None:
    if not _door(request):
        return  # a log-in outside any door (Client.force_login, a shell) is nobody's attempt
    audit_record(action="login.succeeded", actor=user, request=request, resource_type="login",
                 resource_id=_door(request), details={"username": user.get_username()})


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:USERNAME_MAX]
    audit_record(action="login.failed", request=request, resource_type="login", resource_id=_door(request),
                 outcome=AuditEvent.Outcome.FAILURE, aggregate=True, sample="usernames",
                 details={"usernames": [username]})


@receiver(login_rate_limited, dispatch_uid="audit_login_rate_limited")
def login_refused(sender, request, username: str, reason: str, **kwargs) -> None:
    audit_record(action="login.rate_limited", request=request, resource_type="login", resource_id=_door(request),
                 outcome=AuditEvent.Outcome.DENIED, aggregate=True, aggregate_by=("reason",), sample="usernames",
                 details={"usernames": [username[:USERNAME_MAX]], "reason": reason})


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's log-in form. Django refuses an account that may not use the admin (not staff, inactive) after
    `authenticate()` succeeded, when no signal is sent: the right password of such an account is audited here."""

    def confirm_login_allowed(self, user) -> None:
        try:
            super().confirm_login_allowed(user)
        except ValidationError:
            audit_record(action="login.refused", actor=user, request=self.request, resource_type="login",
                         resource_id=_door(self.request), outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                         sample="usernames", details={
                             "usernames": [user.get_username()[:USERNAME_MAX]],
                             "reason": "inactive account" if not user.is_active else "not a staff account"})
            raise

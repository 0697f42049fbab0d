"""Every log-in door leaves an audit event: succeeded, failed, and refused by the log-in limits (issue 19).

The page's form, the admin's form and the JWT endpoint; each event names the user name tried, the
address and the user agent, and never the password.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent

PASSWORD = "correct-horse-battery"
ADDRESS = "203.0.113.7"
BROWSER = "Mozilla/5.0 (login-audit)"


@pytest.fixture(autouse=True)
def _rates(settings):
    settings.TOKEN_RATE = "3/d"
    settings.AUTH_ADDRESS_RATE = "100/d"


def _page(username: str, password: str):
    return Client().post("/login/", {"username": username, "password": password},
                         REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=BROWSER)


def _admin(username: str, password: str):
    return Client().post("/admin/login/", {"username": username, "password": password, "next": "/admin/"},
                         REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=BROWSER)


def _token(username: str, password: str):
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json",
                            REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=BROWSER)


DOORS = [("/login/", _page, 302, 200), ("/admin/login/", _admin, 302, 200), ("/api/auth/token/", _token, 200, 401)]


@pytest.mark.django_db
@pytest.mark.parametrize("door,login,ok,bad", DOORS, ids=["page", "admin", "token"])
def test_a_login_leaves_an_event_when_it_succeeds_fails_or_is_rate_limited(door, login, ok, bad, admin_user):
    admin_user.is_staff = True  # the admin's form lets in staff only
    admin_user.save()
    assert login("sam", PASSWORD).status_code == ok
    assert [login("sam", f"guess-{i}").status_code for i in range(2)] == [bad, bad]
    assert login("sam", PASSWORD).status_code == 429

    events = {e.action: e for e in AuditEvent.objects.all()}
    assert set(events) == {"login.succeeded", "login.failed", "login.rate_limited"}
    succeeded, failed, limited = events["login.succeeded"], events["login.failed"], events["login.rate_limited"]
    assert (succeeded.outcome, succeeded.actor, succeeded.count) == ("success", admin_user, 1)
    assert (failed.outcome, failed.actor, failed.count, failed.details["usernames"]) == ("failure", None, 2, ["sam"])
    assert (limited.outcome, limited.count, limited.details["usernames"]) == ("denied", 1, ["sam"])
    assert "user name" in limited.details["reason"]
    for event in events.values():
        assert (event.resource_type, event.resource_id) == ("login", door)
        assert (event.ip_address, event.user_agent) == (ADDRESS, BROWSER)
        assert PASSWORD not in json.dumps(event.details) and "guess" not in json.dumps(event.details)


@pytest.mark.django_db
def test_guessing_many_user_names_counts_on_one_event_with_a_sample_of_them(db):
    for i in range(30):
        assert _token(f"user{i}", "guess").status_code == 401
    (failed,) = AuditEvent.objects.filter(action="login.failed")
    assert failed.count == 30 and failed.details["usernames"][:3] == ["user0", "user1", "user2"]
    assert len(failed.details["usernames"]) < 30


@pytest.mark.django_db
def test_the_right_password_of_an_account_that_may_not_use_the_admin_is_an_audited_refusal(analyst):
    analyst.set_password(PASSWORD)
    analyst.is_staff = False
    analyst.save()
    answer = _admin(analyst.username, PASSWORD)
    assert answer.status_code == 200 and b"staff account" in answer.content
    (event,) = AuditEvent.objects.filter(action="login.refused")
    assert (event.outcome, event.actor, event.resource_id) == ("denied", analyst, "/admin/login/")
    assert event.details["usernames"] == [analyst.username] and event.details["reason"] == "not a staff account"
    assert PASSWORD not in json.dumps(event.details)

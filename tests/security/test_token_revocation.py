"""Tokens die on password change, deactivation and logout.

Refresh tokens go through simplejwt's blacklist; access tokens carry a claim derived from the
password hash (refused once the password changes) and the id of the refresh token they came
from (refused once that one is logged out).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery"
READ = "/api/telemetry/summary/"


def login(username: str = "ann", password: str = PASSWORD) -> dict:
    response = APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def read(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get(READ).status_code


def refresh(token: str):
    return APIClient().post("/api/auth/token/refresh/", {"refresh": token}, format="json")


def logout(token):
    return APIClient().post("/api/auth/logout/", {"refresh": token}, format="json")


@pytest.mark.django_db
def test_a_password_change_kills_the_access_and_the_refresh_token(analyst):
    tokens = login()
    assert read(tokens["access"]) == 200
    analyst.set_password("a-new-long-passphrase")
    analyst.save()
    assert read(tokens["access"]) == 401
    response = refresh(tokens["refresh"])
    assert response.status_code == 401 and "access" not in response.json()
    assert "password" in response.json()["detail"]
    # The new password gives working tokens.
    fresh = login(password="a-new-long-passphrase")
    assert read(fresh["access"]) == 200 and refresh(fresh["refresh"]).status_code == 200


@pytest.mark.django_db
def test_an_access_token_obtained_by_refresh_dies_with_the_password_too(analyst):
    tokens = login()
    access = refresh(tokens["refresh"]).json()["access"]
    assert read(access) == 200
    analyst.set_password("a-new-long-passphrase")
    analyst.save()
    assert read(access) == 401


@pytest.mark.django_db
def test_deactivation_kills_the_access_and_the_refresh_token(analyst):
    tokens = login()
    analyst.is_active = False
    analyst.save()
    assert read(tokens["access"]) == 401
    assert refresh(tokens["refresh"]).status_code == 401


@pytest.mark.django_db
def test_logout_blacklists_the_refresh_token_and_kills_its_access_tokens(analyst):
    tokens = login()
    later_access = refresh(tokens["refresh"]).json()["access"]
    other = login()  # another device of the same user
    response = logout(tokens["refresh"])
    assert response.status_code == 200, response.content
    assert response.json()["detail"]
    assert refresh(tokens["refresh"]).status_code == 401
    assert read(tokens["access"]) == 401
    assert read(later_access) == 401
    # The other device is not logged out.
    assert read(other["access"]) == 200 and refresh(other["refresh"]).status_code == 200


@pytest.mark.django_db
def test_logging_out_twice_is_harmless(analyst):
    tokens = login()
    assert logout(tokens["refresh"]).status_code == 200
    assert logout(tokens["refresh"]).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"refresh": ""}, {"refresh": 7}])
def test_logout_without_a_refresh_token_is_400(analyst, body):
    response = APIClient().post("/api/auth/logout/", body, format="json")
    assert response.status_code == 400, response.content
    assert "refresh" in response.json()["detail"]


@pytest.mark.django_db
def test_logout_with_a_forged_or_an_access_token_is_401(analyst):
    tokens = login()
    assert logout("not.a.token").status_code == 401
    assert logout(tokens["access"]).status_code == 401
    assert refresh(tokens["refresh"]).status_code == 200  # nothing was logged out


@pytest.mark.django_db
def test_the_page_logout_ends_the_session(analyst):
    browser = Client()
    assert browser.post("/login/", {"username": "ann", "password": PASSWORD}).status_code == 302
    cookie = browser.cookies["sessionid"].value
    assert browser.get("/live-telemetry/").status_code == 200
    assert browser.post("/logout/").status_code == 302
    replay = Client()
    replay.cookies["sessionid"] = cookie
    response = replay.get("/live-telemetry/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert replay.get(READ).status_code in (401, 403)


def test_access_tokens_live_15_minutes():
    assert django_settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] == timedelta(minutes=15)


@pytest.mark.django_db
def test_expired_refresh_tokens_are_forgotten_daily_and_the_admin_never_shows_a_token(analyst):
    import time_machine
    from django.contrib.auth.models import User
    from django.utils import timezone
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    from voltaxe.apps import schedules_sync
    from voltaxe.tasks import tokens_flush_task

    old = login()["refresh"]
    with time_machine.travel(timezone.now() + django_settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] + timedelta(hours=1)):
        fresh = login()["refresh"]
        logout(fresh)
        assert tokens_flush_task() == "deleted 1 expired token row(s)"
    assert list(OutstandingToken.objects.values_list("token", flat=True)) == [fresh] and old != fresh
    schedules_sync()
    from django_q.models import Schedule

    assert Schedule.objects.get(name="auth: expired tokens").func == "voltaxe.tasks.tokens_flush_task"
    root = User.objects.create_superuser("root", "root@voltaxe.test", "pw")
    client = Client()
    client.force_login(root)
    page = client.get(f"/admin/token_blacklist/outstandingtoken/{OutstandingToken.objects.get().pk}/change/")
    assert page.status_code == 200 and fresh not in page.content.decode()

"""Password guessing at the three login doors (the admin, the page's form, the JWT endpoint).

They share one budget per (user name, address) at TOKEN_RATE, so that a guesser locks out only
that user from the guesser's own address, plus a looser budget per address (AUTH_ADDRESS_RATE)
against one address trying many user names. Rates are per day here so that no window edge
falls inside a test.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery"
GUESSER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("admin", "admin@voltaxe.test", PASSWORD)


@pytest.fixture(autouse=True)
def _rates(settings):
    settings.TOKEN_RATE = "10/d"
    settings.AUTH_ADDRESS_RATE = "30/d"


def admin_login(client, password: str, *, username: str = "admin", address: str = GUESSER):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)


def token(username: str, password: str, *, address: str = GUESSER):
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json",
                            REMOTE_ADDR=address)


def assert_html_429(response):
    assert response.status_code == 429, response.status_code
    assert response["Content-Type"].startswith("text/html")
    assert "Too many login attempts" in response.content.decode()
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db
def test_admin_login_stops_a_guesser_and_then_refuses_even_the_right_password(client, superuser):
    codes = [admin_login(client, f"guess-{i}").status_code for i in range(25)]
    assert codes == [200] * 10 + [429] * 15
    response = admin_login(client, PASSWORD)
    assert_html_429(response)
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not logged in


@pytest.mark.django_db
def test_a_guesser_does_not_lock_the_admin_out_from_another_address(client, superuser):
    for i in range(11):
        admin_login(client, f"guess-{i}")
    assert admin_login(client, PASSWORD).status_code == 429
    response = admin_login(client, PASSWORD, address=ELSEWHERE)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_a_guesser_does_not_lock_other_users_of_the_same_address_out(client, superuser, analyst):
    """An office behind one NAT: one person's typos (or a guesser) do not block a colleague."""
    for i in range(11):
        client.post("/login/", {"username": "admin", "password": f"guess-{i}"})
    response = client.post("/login/", {"username": "ann", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/live-telemetry/"


@pytest.mark.django_db
def test_one_address_trying_many_user_names_is_stopped_by_the_address_limit(client, settings, analyst):
    settings.AUTH_ADDRESS_RATE = "6/d"
    codes = [admin_login(client, "guess", username=f"user{i}").status_code for i in range(6)]
    assert codes == [200] * 6
    assert_html_429(admin_login(client, PASSWORD, username="ann"))
    # The same user from elsewhere is not affected.
    assert token("ann", PASSWORD, address=ELSEWHERE).status_code == 200


@pytest.mark.django_db
def test_the_three_doors_share_one_budget(client, analyst):
    """Switching doors does not buy more guesses: 4 at the admin, 3 at the form, 3 at the API, then 429 at each."""
    assert [admin_login(client, "guess", username="ann").status_code for _ in range(4)] == [200] * 4
    assert [client.post("/login/", {"username": "ann", "password": "guess"}, REMOTE_ADDR=GUESSER).status_code
            for _ in range(3)] == [200] * 3
    assert [token("ann", "guess").status_code for _ in range(3)] == [401] * 3
    response = token("ann", PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "Too many login attempts" in body["detail"] and body["retry_after"] >= 1
    assert_html_429(client.post("/login/", {"username": "ann", "password": PASSWORD}, REMOTE_ADDR=GUESSER))
    assert_html_429(admin_login(client, PASSWORD, username="ann"))
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_user_names_differing_only_in_case_or_spaces_share_a_budget(client, superuser):
    for i, name in enumerate(["admin", "ADMIN", " Admin ", "aDmIn"] * 3):
        admin_login(client, f"guess-{i}", username=name)
    assert admin_login(client, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_reading_the_login_pages_costs_nothing(client, superuser):
    for _ in range(15):
        assert client.get("/admin/login/", REMOTE_ADDR=GUESSER).status_code == 200
        assert client.get("/login/", REMOTE_ADDR=GUESSER).status_code == 200
    assert admin_login(client, PASSWORD).status_code == 302

"""JWT edge cases (expired, forged, wrong type, deactivated or deleted user) and CSRF on session-authenticated writes."""
from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow

from audit.models import AuditEvent
from axon.models import ModelVersion, TrainingRun
from tests import fleet

READ = "/api/telemetry/summary/"
RETRAIN = "/api/axon/retrain"


def bearer(token) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_401(response):
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fresh_access_token_reads(analyst):
    """The control for the refusals below: the same construction, still valid, is accepted."""
    assert bearer(AccessToken.for_user(analyst)).get(READ).status_code == 200


@pytest.mark.django_db
def test_an_expired_access_token_is_401(analyst):
    token = AccessToken.for_user(analyst)
    token.set_exp(from_time=aware_utcnow() - timedelta(hours=1), lifetime=timedelta(minutes=15))
    assert_401(bearer(token).get(READ))


@pytest.mark.django_db
def test_an_access_token_expires_after_the_configured_lifetime(admin_user):
    """Signed with the real key, issued just past the lifetime and the clock leeway ago: refused, nothing started."""
    lifetime = django_settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    leeway = timedelta(seconds=django_settings.SIMPLE_JWT["LEEWAY"])
    token = AccessToken.for_user(admin_user)
    token.set_exp(from_time=aware_utcnow() - lifetime - leeway - timedelta(seconds=5), lifetime=lifetime)
    assert_401(bearer(token).post(RETRAIN, {}, format="json"))
    assert not TrainingRun.objects.exists()


def issued_in(seconds: float, user) -> AccessToken:
    """An access token as a server whose clock runs `seconds` ahead of this one would issue it."""
    token = AccessToken.for_user(user)
    issued = aware_utcnow() + timedelta(seconds=seconds)
    token.set_iat(at_time=issued)
    token.set_exp(from_time=issued)
    return token


@pytest.mark.django_db
def test_a_token_from_a_server_a_few_seconds_ahead_is_accepted(analyst):
    """Issue 24: web processes whose clocks differ by seconds must accept each other's fresh tokens."""
    assert bearer(issued_in(5, analyst)).get(READ).status_code == 200


@pytest.mark.django_db
def test_a_token_issued_beyond_the_clock_leeway_in_the_future_is_401(analyst):
    assert_401(bearer(issued_in(120, analyst)).get(READ))


@pytest.mark.django_db
def test_a_token_signed_with_another_key_is_401(admin_user):
    payload = dict(AccessToken.for_user(admin_user).payload)  # every claim valid, only the signature is wrong
    forged = jwt.encode(payload, "not-the-server-key-" + "x" * 40, algorithm="HS256")
    assert_401(bearer(forged).get(READ))
    assert_401(bearer(forged).post(RETRAIN, {}, format="json"))
    assert not TrainingRun.objects.exists()
    # The same claims signed with the real key are accepted: the signature is what was refused.
    genuine = jwt.encode(payload, django_settings.SECRET_KEY, algorithm="HS256")
    assert bearer(genuine).get(READ).status_code == 200


@pytest.mark.django_db
def test_an_unsigned_token_is_401(admin_user):
    payload = dict(AccessToken.for_user(admin_user).payload)
    unsigned = jwt.encode(payload, None, algorithm="none")
    assert_401(bearer(unsigned).get(READ))


@pytest.mark.django_db
def test_a_refresh_token_is_not_an_access_token(admin_user):
    refresh = RefreshToken.for_user(admin_user)
    assert_401(bearer(refresh).get(READ))
    assert_401(bearer(refresh).post(RETRAIN, {}, format="json"))
    assert not TrainingRun.objects.exists()
    # ...while it does what it is for.
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": str(refresh)}, format="json")
    assert response.status_code == 200
    assert bearer(response.json()["access"]).get(READ).status_code == 200


@pytest.mark.django_db
def test_an_access_token_cannot_be_used_to_refresh(analyst):
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": str(AccessToken.for_user(analyst))}, format="json")
    assert response.status_code == 401
    assert "access" not in response.json()


@pytest.mark.django_db
def test_a_deactivated_user_can_neither_refresh_nor_use_a_still_valid_access_token(analyst):
    client = APIClient()
    tokens = client.post("/api/auth/token/", {"username": "ann", "password": "correct-horse-battery"}, format="json").json()
    assert bearer(tokens["access"]).get(READ).status_code == 200
    analyst.is_active = False
    analyst.save()
    refreshed = client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 401, refreshed.content
    assert "access" not in refreshed.json()
    assert_401(bearer(tokens["access"]).get(READ))


@pytest.mark.django_db
def test_a_refresh_token_of_a_deleted_user_is_401_not_a_server_error(analyst):
    refresh = str(RefreshToken.for_user(analyst))
    analyst.delete()
    client = APIClient()
    client.raise_request_exception = False
    response = client.post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert "access" not in response.json()


@pytest.mark.django_db
def test_an_access_token_of_a_deleted_user_is_401(analyst):
    access = str(AccessToken.for_user(analyst))
    analyst.delete()
    assert_401(bearer(access).get(READ))


@pytest.mark.django_db
def test_a_tampered_role_claim_does_not_grant_rights(analyst):
    """Rights come from the database, not from the token: an analyst's token edited to say superuser is refused."""
    payload = dict(AccessToken.for_user(analyst).payload, is_superuser=True, is_staff=True)
    client = bearer(jwt.encode(payload, django_settings.SECRET_KEY, algorithm="HS256"))
    assert client.post(RETRAIN, {}, format="json").status_code == 403
    assert not TrainingRun.objects.exists()


# --- CSRF on session-authenticated writes ---------------------------------------------------


def csrf_client(user, *, api: bool = True):
    client = (APIClient if api else Client)(enforce_csrf_checks=True)
    client.raise_request_exception = False
    client.force_login(user)
    return client


def csrf_token(client) -> str:
    """The token the page hands to the browser (its forms and its script post with it)."""
    response = client.get("/live-telemetry/")
    assert response.status_code == 200
    token = response.cookies["csrftoken"].value
    client.cookies["csrftoken"] = token
    return token


def started() -> int:
    return AuditEvent.objects.filter(action="retrain.started").count()


@pytest.fixture
def inactive_version(db):
    """A trained model version that is not active, so that activating it changes something observable."""
    fleet.history(days=1)
    assert fleet.train().status == "succeeded"
    ModelVersion.objects.update(is_active=False)
    return ModelVersion.objects.get().version


def active_versions() -> list[int]:
    return list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True))


@pytest.mark.django_db
def test_session_retrain_without_csrf_token_is_403_and_starts_nothing(admin_user):
    client = csrf_client(admin_user)
    csrf_token(client)  # the cookie alone is not enough: the header must carry the token
    response = client.post(RETRAIN, {"reason": "csrf"}, format="json")
    assert response.status_code == 403, response.content
    assert "CSRF" in response.json()["detail"]
    assert not TrainingRun.objects.exists() and started() == 0


@pytest.mark.django_db
def test_session_retrain_with_a_wrong_csrf_token_is_403(admin_user):
    client = csrf_client(admin_user)
    csrf_token(client)
    response = client.post(RETRAIN, {}, format="json", HTTP_X_CSRFTOKEN="x" * 64)
    assert response.status_code == 403
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_session_retrain_with_csrf_token_is_accepted(admin_user):
    client = csrf_client(admin_user)
    token = csrf_token(client)
    response = client.post(RETRAIN, {"reason": "csrf"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "training_started"
    run = TrainingRun.objects.get()
    assert (run.trigger, run.reason) == ("dashboard", "csrf") and started() == 1


@pytest.mark.django_db
def test_session_activate_without_csrf_token_is_403_and_changes_nothing(admin_user, inactive_version):
    client = csrf_client(admin_user)
    csrf_token(client)
    response = client.post(f"/api/axon/models/{inactive_version}/activate/", format="json")
    assert response.status_code == 403, response.content
    assert active_versions() == []


@pytest.mark.django_db
def test_session_activate_with_csrf_token_is_accepted(admin_user, inactive_version):
    client = csrf_client(admin_user)
    token = csrf_token(client)
    response = client.post(f"/api/axon/models/{inactive_version}/activate/", format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    assert active_versions() == [inactive_version]


@pytest.mark.django_db
def test_page_form_retrain_without_csrf_token_is_403_and_starts_nothing(admin_user):
    client = csrf_client(admin_user, api=False)
    csrf_token(client)
    response = client.post("/live-telemetry/retrain/", {"reason": "csrf"})
    assert response.status_code == 403
    assert not TrainingRun.objects.exists() and started() == 0


@pytest.mark.django_db
def test_page_form_retrain_with_csrf_token_is_accepted(admin_user):
    client = csrf_client(admin_user, api=False)
    token = csrf_token(client)
    response = client.post("/live-telemetry/retrain/", {"reason": "csrf", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/live-telemetry/"
    run = TrainingRun.objects.get()
    assert (run.trigger, run.reason) == ("dashboard", "csrf")


@pytest.mark.django_db
def test_page_form_activate_without_csrf_token_is_403(admin_user, inactive_version):
    client = csrf_client(admin_user, api=False)
    csrf_token(client)
    response = client.post(f"/live-telemetry/models/{inactive_version}/activate/")
    assert response.status_code == 403
    assert active_versions() == []


@pytest.mark.django_db
def test_jwt_writes_need_no_csrf_token(admin_user, inactive_version):
    """A bearer token is not sent by the browser on its own, so CSRF does not apply: same client, no token, accepted."""
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(admin_user)}")
    response = client.post(RETRAIN, {"reason": "jwt"}, format="json")
    assert response.status_code == 200, response.content
    assert TrainingRun.objects.get(pk=response.json()["run_id"]).trigger == "api"
    response = client.post(f"/api/axon/models/{inactive_version}/activate/", format="json")
    assert response.status_code == 200, response.content
    assert active_versions() == [inactive_version]


@pytest.mark.django_db
def test_jwt_with_a_session_cookie_too_still_needs_no_csrf(admin_user):
    """Both credentials present: the bearer token authenticates first, so a script holding a cookie is not blocked."""
    client = csrf_client(admin_user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(admin_user)}")
    response = client.post(RETRAIN, {}, format="json")
    assert response.status_code == 200, response.content
    assert TrainingRun.objects.get().trigger == "api"


@pytest.mark.django_db
def test_csrf_refusal_of_an_analyst_still_starts_nothing(analyst):
    """An analyst without the token: refused (CSRF or role, either is a 403), and no run, no 'started' event."""
    client = csrf_client(analyst)
    response = client.post(RETRAIN, {}, format="json")
    assert response.status_code == 403
    assert not TrainingRun.objects.exists() and started() == 0

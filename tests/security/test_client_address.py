"""The client's address, resolved once for the rate limits and the audit log.

X-Forwarded-For is read only from a proxy listed in TRUSTED_PROXIES, and the client is the
right-most address in it that is not itself a trusted proxy (what the nearest trusted proxy saw).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from audit.models import AuditEvent
from tests.conftest import REPO

PASSWORD = "correct-horse-battery"
PROXY = "10.0.0.5"


@pytest.fixture(autouse=True)
def _rates(settings):
    settings.TOKEN_RATE = "3/d"
    settings.AUTH_ADDRESS_RATE = "30/d"


def token(username: str, password: str, *, remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json", **extra)


def audited_address(user, *, remote: str, forwarded: str | None = None) -> str | None:
    """Press retrain through the API and read the address the audit log recorded for it."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    response = client.post("/api/axon/retrain", {"reason": "address"}, format="json", **extra)
    assert response.status_code == 200, response.content
    return AuditEvent.objects.filter(action="retrain.started").get().ip_address


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_has_its_own_login_budget(settings, analyst):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    codes = [token("ann", "guess", remote=PROXY, forwarded="198.51.100.66").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # The real ann comes through the same proxy from her own address: not locked out.
    assert token("ann", PASSWORD, remote=PROXY, forwarded="198.51.100.2").status_code == 200


@pytest.mark.django_db
def test_without_trusted_proxies_x_forwarded_for_cannot_buy_fresh_budgets(analyst):
    """The default trusts no proxy: a guesser who writes a new X-Forwarded-For each time is still one address."""
    codes = [token("ann", "guess", remote="203.0.113.7", forwarded=f"198.51.100.{i}").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


@pytest.mark.django_db
def test_a_client_that_is_not_a_trusted_proxy_cannot_claim_another_address(settings, analyst):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    codes = [token("ann", "guess", remote="203.0.113.7", forwarded=f"198.51.100.{i}").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


@pytest.mark.django_db
def test_the_audit_log_records_the_client_behind_the_proxy_not_the_proxy(settings, admin_user):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert audited_address(admin_user, remote=PROXY, forwarded="198.51.100.7") == "198.51.100.7"


@pytest.mark.django_db
def test_an_address_the_client_wrote_itself_is_ignored(settings, admin_user):
    """Left of what the trusted proxies appended is whatever the client sent: the right-most untrusted hop wins."""
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.1"]
    forwarded = "1.1.1.1, 198.51.100.9, 192.0.2.1, 10.1.2.3"
    assert audited_address(admin_user, remote=PROXY, forwarded=forwarded) == "198.51.100.9"


@pytest.mark.django_db
def test_without_trusted_proxies_the_audit_log_records_the_peer(admin_user):
    assert audited_address(admin_user, remote="203.0.113.7", forwarded="198.51.100.7") == "203.0.113.7"


@pytest.mark.django_db
def test_a_malformed_forwarded_header_falls_back_to_the_proxy(settings, admin_user):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert audited_address(admin_user, remote=PROXY, forwarded="unknown, <script>") == PROXY


@pytest.mark.django_db
def test_ipv6_clients_and_proxies(settings, admin_user):
    settings.TRUSTED_PROXIES = ["fd00::/8"]
    assert audited_address(admin_user, remote="fd00::1", forwarded="2001:db8::7") == "2001:db8::7"


@pytest.mark.django_db
def test_a_proxy_on_a_unix_socket(settings, admin_user, analyst):
    """gunicorn on a Unix socket has no peer address: with trusted proxies set, X-Forwarded-For names the client."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert audited_address(admin_user, remote="", forwarded="198.51.100.8") == "198.51.100.8"
    settings.TRUSTED_PROXIES = []
    # Without, there is no address to record, and log-ins still answer (one shared budget).
    assert token("ann", PASSWORD, remote="").status_code == 200


def test_a_bad_trusted_proxy_setting_stops_the_start(subprocess_env):
    def check(value: str):
        return subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], cwd=REPO,
                              env={**subprocess_env, "TRUSTED_PROXIES": value}, capture_output=True, text=True, timeout=120)

    assert check("10.0.0.0/8, 192.0.2.1, fd00::/8").returncode == 0
    result = check("10.0.0.0/8, proxy.internal")
    assert result.returncode != 0
    assert "TRUSTED_PROXIES" in result.stderr and "proxy.internal" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("forwarded,client", [
    ("203.0.113.7:51234", "203.0.113.7"),        # what some proxies (Azure, IIS) append: the client's port too
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),               # a bare IPv6 address is not "address:port"
    ("198.51.100.9, 10.1.2.3:8080", "198.51.100.9"),  # a trusted proxy written with its port is still skipped
])
def test_a_forwarded_address_with_a_port_is_the_address(settings, admin_user, forwarded, client):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert audited_address(admin_user, remote=PROXY, forwarded=forwarded) == client


@pytest.mark.django_db
def test_clients_that_differ_only_by_port_share_one_login_budget(settings, analyst):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    codes = [token("ann", "guess", remote=PROXY, forwarded=f"198.51.100.66:{40000 + i}").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    assert token("ann", PASSWORD, remote=PROXY, forwarded="198.51.100.2:40000").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("forwarded", ["203.0.113.7:99999", "203.0.113.7:", "[2001:db8::1]:x", "2001:db8::1]:443",
                                       "[203.0.113.7]:443", "host.example:443"])
def test_a_malformed_address_with_a_port_falls_back_to_the_proxy(settings, admin_user, forwarded):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert audited_address(admin_user, remote=PROXY, forwarded=forwarded) == PROXY

"""Issue 19 points 4 and 7: triage rights follow severity, and closing hides what was seen, not what comes.

An analyst may acknowledge, mark malicious or close an ordinary alert; only a security admin
may clear a "malicious" verdict or close a high-risk alert. A closed alert flagged again (by
arrival, whatever timestamp the agent wrote) is open again and never offered for learning.
"""
from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from axon.models import Alert
from tests import fleet
from tests.axon.test_exact_approvals import MINER, agent, post, snapshot
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
ALERTS, TRIAGE, PREVIEW = "/api/axon/alerts/", "/api/axon/alerts/triage/", "/api/axon/retrain/preview/"


@pytest.fixture
def miner(db):
    """A model on the demo history; then a miner on build-01: a high-risk alert. Returns (agent, key)."""
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    build = agent("build-01")
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=600))
    return build


def miner_alert(client, status: str = "all") -> dict | None:
    return next((a for a in client.get(f"{ALERTS}?status={status}").json()["results"] if a["name"] == "xmrig"), None)


def triage(client, key: str, status: str, note: str = ""):
    return client.post(TRIAGE, {"keys": [key], "status": status, "note": note}, format="json")


def test_an_analyst_cannot_clear_a_security_admins_malicious_verdict(miner, admin_client, analyst_client):
    key = miner_alert(analyst_client)["key"]
    assert triage(admin_client, key, "malicious", "a miner").status_code == 200
    for status in ("acknowledged", "open", "closed"):
        refused = triage(analyst_client, key, status, "checking")
        assert refused.status_code == 403, refused.content
        assert "Only a security admin may clear a malicious verdict" in refused.json()["detail"]
    assert Alert.objects.get(key=key).status == "malicious" and Alert.objects.get(key=key).note == "a miner"
    assert key not in {i["key"] for i in admin_client.get(PREVIEW).json()["will_learn"]}
    denied = AuditEvent.objects.get(action="alert.triaged", outcome="denied")
    assert denied.count == 3 and denied.details["malicious"] == [key]
    # The security admin may change their mind, and the audit says from what to what.
    assert triage(admin_client, key, "acknowledged", "false alarm").status_code == 200
    event = AuditEvent.objects.filter(action="alert.triaged", outcome="success").order_by("-id").first()
    assert event.details["before"] == {key: "malicious"} and event.details["status"] == "acknowledged"


def test_an_analyst_cannot_close_a_high_risk_alert_and_a_closed_alert_seen_again_reopens(
        miner, admin_client, analyst_client):
    alert = miner_alert(analyst_client)
    assert alert["risk"] == "high"
    refused = triage(analyst_client, alert["key"], "closed", "noise")
    assert refused.status_code == 403 and "close a high-risk alert" in refused.json()["detail"]
    assert not Alert.objects.exists()
    assert triage(admin_client, alert["key"], "closed", "lab machine").status_code == 200
    assert miner_alert(analyst_client, "open") is None and miner_alert(analyst_client, "closed")["note"] == "lab machine"
    # The miner runs again; its agent writes a timestamp older than what was closed, to stay hidden.
    assert "xmrig" in post(miner, snapshot("build-01", [MINER], seconds_ago=900))
    again = miner_alert(analyst_client, "open")
    assert again is not None and again["reopened"] is True and again["count"] == 2
    assert miner_alert(analyst_client, "closed") is None
    # Back in front of people, but closing taught nothing and re-opening does not either.
    assert alert["key"] not in {i["key"] for i in admin_client.get(PREVIEW).json()["will_learn"]}


def test_the_page_tells_an_analyst_why_a_high_risk_alert_was_not_closed(miner, analyst):
    key = miner_alert(client_for(analyst))["key"]
    browser = Client()
    browser.force_login(analyst)
    page = browser.post("/live-telemetry/triage/", {"key": [key], "status": "closed", "note": "noise"}, follow=True)
    assert page.status_code == 200
    assert "Only a security admin may close a high-risk alert" in page.content.decode()
    assert not Alert.objects.exists()

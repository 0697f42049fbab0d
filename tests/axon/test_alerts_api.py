"""Issue 20: the alerts workspace's API. Every alert findable by status, host, risk, text and time, ranked by
severity in words, counted and paged; one alert in detail with every observation, its triage history and approval.

The story: a model on the demo history; then a miner on build-01 (high risk), and on pg-main a report tool
seen twice and an export script (an interpreter: its script tells it apart).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from axon.models import AlertChange, Approval
from telemetry.models import AgentKey
from tests import fleet
from tests.axon.test_exact_approvals import MINER, agent, post, snapshot
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
ALERTS, TRIAGE = "/api/axon/alerts/", "/api/axon/alerts/triage/"
REPORT = {"name": "reportgen", "exe": "/usr/local/bin/reportgen", "username": "postgres", "cmdline": "reportgen --daily"}
EXPORT = {"name": "python3", "exe": "/usr/bin/python3", "username": "etl",
          "cmdline": "python3 /opt/etl/nightly_export.py --full"}


@pytest.fixture
def story(db):
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    build, pg = agent("build-01"), agent("pg-main")
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=900))
    assert {"reportgen", "python3"} <= post(pg, snapshot("pg-main", [REPORT, EXPORT], seconds_ago=600))
    assert "reportgen" in post(pg, snapshot("pg-main", [REPORT], seconds_ago=300))
    return {"build": build, "pg": pg}


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [a["name"] for a in response.json()["results"]]


def key_of(client, name: str) -> str:
    return next(a["key"] for a in client.get(f"{ALERTS}?status=all").json()["results"] if a["name"] == name)


def test_rows_carry_script_severity_in_words_and_the_raw_score(story, analyst_client):
    body = analyst_client.get(ALERTS).json()
    assert body["total"] == 3 and body["next"] is None
    rows = {a["name"]: a for a in body["results"]}
    assert rows["python3"]["script"] == "/opt/etl/nightly_export.py" and rows["xmrig"]["script"] is None
    miner = rows["xmrig"]
    assert miner["severity"] == "high" and miner["severity_reasons"][0].startswith("high risk: runs from a temporary")
    assert isinstance(miner["max_score"], float)
    for row in body["results"]:
        assert row["severity"] in ("high", "medium", "low") and row["severity_reasons"], row
        assert any(r.startswith("last seen ") for r in row["severity_reasons"])
    # Severity ranks: the high-risk miner first, whatever the saturated scores say.
    assert names(analyst_client.get(ALERTS))[0] == "xmrig"


def test_filters_by_host_risk_text_and_status(story, analyst_client):
    assert names(analyst_client.get(f"{ALERTS}?hostname=build-01")) == ["xmrig"]
    assert names(analyst_client.get(f"{ALERTS}?risk=high")) == ["xmrig"]
    assert sorted(names(analyst_client.get(f"{ALERTS}?risk=low"))) == ["python3", "reportgen"]
    assert names(analyst_client.get(f"{ALERTS}?q=XMRIG")) == ["xmrig"]  # any case
    assert names(analyst_client.get(f"{ALERTS}?q=nightly_export")) == ["python3"]  # the script
    assert names(analyst_client.get(f"{ALERTS}?q=/usr/local/bin/")) == ["reportgen"]  # the path
    assert names(analyst_client.get(f"{ALERTS}?q=postgres")) == ["reportgen"]  # the user
    key = key_of(analyst_client, "reportgen")
    assert analyst_client.post(TRIAGE, {"keys": [key], "status": "acknowledged", "note": "asking the DBA team"},
                               format="json").status_code == 200
    assert "reportgen" not in names(analyst_client.get(ALERTS))  # open by default
    acknowledged = analyst_client.get(f"{ALERTS}?status=acknowledged").json()["results"]
    assert [(a["name"], a["note"], a["updated_by"]) for a in acknowledged] == [
        ("reportgen", "asking the DBA team", "ann@voltaxe.test")]
    assert acknowledged[0]["updated_at"] is not None
    assert analyst_client.get(f"{ALERTS}?status=all").json()["total"] == 3


def test_since_and_until_keep_the_alerts_seen_in_that_time(story, analyst_client):
    now = timezone.now()
    since = (now - timedelta(seconds=700)).isoformat().replace("+00:00", "Z")
    assert sorted(names(analyst_client.get(f"{ALERTS}?since={since}"))) == ["python3", "reportgen"]
    assert names(analyst_client.get(f"{ALERTS}?until={since}")) == ["xmrig"]
    until = (now - timedelta(seconds=450)).isoformat()  # '+00:00' arrives as ' 00:00': still read as UTC
    assert sorted(names(analyst_client.get(f"{ALERTS}?since={since}&until={until}"))) == ["python3", "reportgen"]


def test_orderings(story, analyst_client):
    assert names(analyst_client.get(f"{ALERTS}?ordering=-count"))[0] == "reportgen"  # seen twice
    assert names(analyst_client.get(f"{ALERTS}?ordering=-last_seen"))[0] == "reportgen"  # 5 minutes ago
    assert names(analyst_client.get(f"{ALERTS}?ordering=hostname"))[0] == "xmrig"  # build-01 < pg-main
    assert names(analyst_client.get(f"{ALERTS}?ordering=severity")) == names(analyst_client.get(ALERTS))


def test_paging_counts_every_match_and_links_the_next_page(story, analyst_client):
    first = analyst_client.get(f"{ALERTS}?limit=2").json()
    assert first["total"] == 3 and len(first["results"]) == 2 and "offset=2" in first["next"]
    rest = analyst_client.get(first["next"]).json()
    assert rest["total"] == 3 and len(rest["results"]) == 1 and rest["next"] is None
    every = {a["key"] for a in analyst_client.get(ALERTS).json()["results"]}
    assert {a["key"] for a in first["results"] + rest["results"]} == every


@pytest.mark.parametrize("query, name", [
    ("status=urgent", "status"), ("ordering=score", "ordering"), ("risk=medium", "risk"),
    ("since=yesterday", "since"), ("until=2026-13-45T00:00:00Z", "until"), ("limit=0", "limit"), ("offset=-1", "offset"),
])
def test_a_bad_parameter_is_a_400_that_names_it(story, analyst_client, query, name):
    response = analyst_client.get(f"{ALERTS}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert name in body["errors"] and body["detail"].startswith(name), body


def test_the_detail_has_every_observation_newest_first_paged(story, analyst_client):
    key = key_of(analyst_client, "reportgen")
    body = analyst_client.get(f"{ALERTS}{key}/").json()
    assert body["key"] == key and body["count"] == 2 and body["severity"] in ("medium", "low")
    observations = body["observations"]
    assert len(observations) == 2 and observations[0]["timestamp"] > observations[1]["timestamp"]
    first = observations[0]
    assert first["cmdline"] == "reportgen --daily" and first["source"] == "snapshot" and first["pid"] >= 5000
    assert first["ppid"] == 100 and first["parent"] and first["model_version"] == 1
    assert set(first) == {"timestamp", "pid", "ppid", "parent", "cmdline", "cpu_percent", "memory_rss",
                          "model_version", "source"}
    assert body["history"] == [] and body["approval"] is None
    paged = analyst_client.get(f"{ALERTS}{key}/?limit=1").json()
    assert [o["timestamp"] for o in paged["observations"]] == [first["timestamp"]] and "offset=1" in paged["next"]
    older = analyst_client.get(paged["next"]).json()
    assert [o["timestamp"] for o in older["observations"]] == [observations[1]["timestamp"]] and older["next"] is None


def test_the_detail_keeps_every_triage_change_with_note_who_and_when(story, analyst_client, admin_client):
    key = key_of(analyst_client, "xmrig")
    for client, status, note in ((analyst_client, "acknowledged", "checking with the build team"),
                                 (admin_client, "malicious", "a miner")):
        assert client.post(TRIAGE, {"keys": [key], "status": status, "note": note}, format="json").status_code == 200
    # Refused (an analyst may not clear a security admin's verdict): no history is written.
    assert analyst_client.post(TRIAGE, {"keys": [key], "status": "open"}, format="json").status_code == 403
    history = analyst_client.get(f"{ALERTS}{key}/").json()["history"]
    assert [(h["status"], h["note"], h["by"]) for h in history] == [
        ("malicious", "a miner", "sam@voltaxe.test"), ("acknowledged", "checking with the build team", "ann@voltaxe.test")]
    assert all(h["at"] for h in history)


def test_a_revoked_approval_is_in_the_history_and_a_covering_approval_is_shown(story, admin_client, analyst_client):
    key = key_of(analyst_client, "reportgen")
    # An approval from before scripts were told apart (script NULL) covers the program whatever it runs.
    approval = Approval.objects.create(hostname="pg-main", name="reportgen", exe="/usr/local/bin/reportgen",
                                       parent=analyst_client.get(f"{ALERTS}{key}/").json()["parent"], script=None,
                                       approved_by_name="sasha@voltaxe.test")
    shown = analyst_client.get(f"{ALERTS}{key}/").json()["approval"]
    assert shown["id"] == approval.pk and shown["approved_by"] == "sasha@voltaxe.test"
    assert admin_client.post(f"/api/axon/approvals/{approval.pk}/revoke/").status_code == 200
    body = analyst_client.get(f"{ALERTS}{key}/").json()
    assert body["approval"] is None and body["status"] == "acknowledged"
    assert [(h["status"], h["note"], h["by"]) for h in body["history"]] == [
        ("acknowledged", "approval revoked by sam@voltaxe.test", "sam@voltaxe.test")]
    assert AlertChange.objects.filter(key=key).count() == 1


def test_an_unknown_key_is_a_404_with_a_sentence(story, analyst_client):
    response = analyst_client.get(f"{ALERTS}{'0' * 24}/")
    assert response.status_code == 404 and "No alert has this key" in response.json()["detail"]


def test_agents_and_strangers_are_refused_analysts_and_admins_read(story, analyst, admin_user, anon_client):
    key = key_of(client_for(analyst), "xmrig")
    _, secret = AgentKey.objects.create_key(name="reader")
    agent_client = client_for(None)
    agent_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    for path in (ALERTS, f"{ALERTS}{key}/"):
        assert anon_client.get(path).status_code == 401
        assert agent_client.get(path).status_code == 403
        assert client_for(analyst).get(path).status_code == 200
        assert client_for(admin_user).get(path).status_code == 200


def test_an_approved_alert_stays_findable_with_the_approval_that_covers_it(story, admin_client, analyst_client):
    from tests.axon.test_exact_approvals import press

    key = key_of(analyst_client, "reportgen")
    press(admin_client, {"approve": [key], "reason": "the DBA's report tool"})
    assert key not in {a["key"] for a in analyst_client.get(ALERTS + "?status=all").json()["results"]}
    detail = analyst_client.get(f"{ALERTS}{key}/")
    assert detail.status_code == 200, detail.content
    body = detail.json()
    assert body["name"] == "reportgen" and body["count"] == 2 and len(body["observations"]) == 2
    assert body["approval"]["approved_by"] == "sam@voltaxe.test" and body["approval"]["key"] == key

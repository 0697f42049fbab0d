"""Issue 19 point 3: one host's key floods its own host with new names; the flood is one line everywhere a
person looks (the preview, the alerts list and its API, the Live page and its poll, the hosts list), itself
an alert that is triaged and told, and its programs are listed one by one only for the host asked by name."""
from __future__ import annotations

import pytest

from axon.models import Approval
from axon.selectors import flood_key
from tests.axon.test_exact_approvals import (
    ONE_OFFS,
    PREVIEW,
    full_preview,
    miner_and_one_offs,  # noqa: F401 (a fixture the one here builds on)
    post,
    press,
    snapshot,
)
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
ALERTS = "/api/axon/alerts/"


@pytest.fixture
def flood(miner_and_one_offs, settings):  # noqa: F811
    """pg-main's key put 205 new names before people, more than the 200 one host may."""
    settings.HOST_NEW_PROGRAMS_BUDGET = 200
    return miner_and_one_offs


def test_the_preview_shows_a_flooding_host_as_one_line_and_a_default_press_learns_none_of_it(flood, admin_client):
    body = admin_client.get(PREVIEW).json()
    (line,) = body["floods"]
    assert line["hostname"] == "pg-main" and line["programs"] == 205 and line["observations"] == 205
    assert line["summary"].startswith("pg-main: 205 new programs (205 observations) arrived in ")
    assert line["summary"].endswith(": a flood") and line["key"] == flood_key("pg-main")
    assert [i["name"] for i in body["will_learn"]] == ["xmrig"] and body["total"] == 1
    run = press(admin_client, {})
    assert run.approved == [] and not Approval.objects.exists()


def test_asked_for_by_name_a_flooding_hosts_items_are_listed_held_and_can_be_approved_by_key(flood, admin_client):
    total, items = full_preview(admin_client, hostname="pg-main")
    assert total == 205 and {i["name"] for i in items} == set(ONE_OFFS)
    assert not any(i["default"] for i in items)
    assert items[0]["held_reasons"] == [
        "one of 205 new programs from pg-main since the model last learned, more than the 200 one host may put "
        "before you at once: a flood; tick it deliberately"]
    assert admin_client.get(f"{PREVIEW}?hostname=pg-main").json()["floods"] == []
    chosen = [i["key"] for i in items[:3]]
    run = press(admin_client, {"approve": chosen})
    assert sorted(a["key"] for a in run.approved) == sorted(chosen)


def test_the_alerts_list_its_api_and_the_live_page_show_the_flood_as_one_line(flood, admin_client, admin_user, client):
    body = admin_client.get(ALERTS).json()
    assert [f["hostname"] for f in body["floods"]] == ["pg-main"]
    assert {a["name"] for a in body["results"]} == {"xmrig"} and body["total"] == 1
    one_host = admin_client.get(f"{ALERTS}?hostname=pg-main&limit=500").json()
    assert one_host["floods"] == [] and one_host["total"] == 205
    client.force_login(admin_user)
    for path in ("/live-telemetry/", "/live-telemetry/data/", "/alerts/"):
        page = client.get(path)
        assert page.status_code == 200
        html = page.content.decode() if path != "/live-telemetry/data/" else str(page.json())
        assert "205 new programs" in html and "oneoffaa" not in html, path
    assert "1–20 of 205" in client.get("/alerts/?hostname=pg-main&status=all").content.decode()


def test_the_hosts_list_counts_a_floods_programs(flood, admin_client):
    hosts = {h["hostname"]: h for h in admin_client.get("/api/telemetry/hosts/").json()["results"]}
    assert hosts["pg-main"]["open_alerts"] == 205 and hosts["build-01"]["open_alerts"] == 1


def test_only_a_security_admin_closes_a_flood_and_a_new_name_from_the_host_opens_it_again(flood, admin_client, analyst):
    key = flood_key("pg-main")
    refused = client_for(analyst).post(f"{ALERTS}triage/", {"keys": [key], "status": "closed"}, format="json")
    assert refused.status_code == 403, refused.content
    closed = admin_client.post(f"{ALERTS}triage/", {"keys": [key], "status": "closed", "note": "host re-imaged"},
                               format="json")
    assert closed.status_code == 200, closed.content
    assert admin_client.get(ALERTS).json()["floods"] == []
    (hidden,) = admin_client.get(f"{ALERTS}?status=closed").json()["floods"]
    assert hidden["status"] == "closed"
    assert "another" in post(flood["pg"], snapshot("pg-main", [{"name": "another", "exe": "/usr/local/bin/another",
                                                                "username": "postgres"}], seconds_ago=500))
    (back,) = admin_client.get(ALERTS).json()["floods"]
    assert back["status"] == "open" and back["reopened"] is True and back["programs"] == 206


def test_the_host_page_shows_its_flood_as_one_line(flood, admin_user, client):
    client.force_login(admin_user)
    html = client.get("/hosts/pg-main/").content.decode()
    assert "pg-main: 205 new programs" in html and html.count('class="alert-row') == 1
    assert "xmrig" in client.get("/hosts/build-01/").content.decode()


def test_a_floods_program_has_its_own_detail_page(flood, admin_client):
    (one,) = admin_client.get(f"{ALERTS}?hostname=pg-main&q=oneoffhw").json()["results"]
    detail = admin_client.get(f"{ALERTS}{one['key']}/")
    assert detail.status_code == 200 and detail.json()["name"] == "oneoffhw", detail.content

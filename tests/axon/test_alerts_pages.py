"""Issue 20: the /alerts/ workspace and /alerts/<key>/ as a browser without JavaScript meets them."""
from __future__ import annotations

import pytest
from django.test import Client

from axon.models import Alert, AlertChange
from tests.axon.test_alerts_api import key_of, story  # noqa: F401  (the story fixture)
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_filters_live_in_the_address_and_the_count_says_which_rows(story, analyst):  # noqa: F811
    page = browser(analyst).get("/alerts/?hostname=pg-main&ordering=-count")
    html = page.content.decode()
    assert page.status_code == 200
    assert "1–2 of 2" in html and "reportgen" in html and "xmrig" not in html
    assert 'name="hostname" value="pg-main"' in html
    # Sorting keeps the filters; the current sort is not a link.
    assert "?hostname=pg-main&amp;ordering=-last_seen#results" in html and 'aria-current="true">Count<' in html


def test_bulk_triage_returns_to_the_same_filtered_view(story, analyst):  # noqa: F811
    key = key_of(client_for(analyst), "reportgen")
    response = browser(analyst).post("/alerts/triage/", {"key": [key], "status": "acknowledged", "note": "asking the DBA",
                                                        "filters": "hostname=pg-main&range=24h&evil=1"})
    assert response.status_code == 302 and response["Location"] == "/alerts/?hostname=pg-main&range=24h#results"
    assert Alert.objects.get(key=key).status == "acknowledged" and AlertChange.objects.get(key=key).by_name == "ann@voltaxe.test"
    html = browser(analyst).get("/alerts/?status=acknowledged").content.decode()
    assert "asking the DBA" in html  # the note is in the row, not in a tooltip


def test_an_empty_triage_and_a_bad_filter_say_what_to_do(story, analyst):  # noqa: F811
    page = browser(analyst).post("/alerts/triage/", {"status": "closed", "filters": "risk=low"}, follow=True)
    assert "Tick at least one alert first." in page.content.decode()
    bad = browser(analyst).get("/alerts/?range=2w")
    assert bad.status_code == 400 and "range must be one of 1h, 24h, 7d, 30d." in bad.content.decode()


def test_the_alert_page_shows_observations_history_and_a_way_back(story, analyst):  # noqa: F811
    key = key_of(client_for(analyst), "python3")
    client = browser(analyst)
    client.post("/alerts/triage/", {"key": [key], "status": "acknowledged", "note": "ETL job?", "return": "alert"})
    html = client.get(f"/alerts/{key}/?back=hostname%3Dpg-main").content.decode()
    assert "/opt/etl/nightly_export.py" in html and "python3 /opt/etl/nightly_export.py --full" in html
    assert "ETL job?" in html and "ann@voltaxe.test" in html and 'href="/hosts/pg-main/"' in html
    assert 'href="/alerts/?hostname=pg-main"' in html
    assert client.get(f"/alerts/{'0' * 24}/").status_code == 404


def test_the_nav_links_the_workspace_and_strangers_are_sent_to_log_in(story, analyst, nobody):  # noqa: F811
    assert 'href="/alerts/">Alerts</a>' in browser(analyst).get("/live-telemetry/").content.decode()
    assert Client().get("/alerts/").status_code == 302
    assert browser(nobody).get("/alerts/").status_code == 403

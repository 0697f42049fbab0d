"""The hosts pages and the Live page's late hosts, as a logged-in analyst meets them (server-rendered HTML)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from telemetry.models import ProcessRecord
from tests.telemetry.test_hosts_api import agent, every_five_minutes

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet() -> datetime:
    """web-1 fell silent an hour ago; web-2 reports every five minutes up to now. sshd on web-1 is flagged."""
    now = timezone.now().replace(microsecond=0)
    every_five_minutes(agent("web-1")[0], "web-1", now - timedelta(hours=2))
    every_five_minutes(agent("web-2")[0], "web-2", now - timedelta(minutes=25))
    ProcessRecord.objects.filter(name="sshd", endpoint__hostname="web-1").update(
        flagged=True, status="open", score=0.9, reasons=["never seen on this host"])
    return now


@pytest.fixture
def browser_of(analyst) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


def test_the_hosts_page_lists_hosts_with_late_badges_and_filters(browser_of, fleet):
    page = browser_of.get("/hosts/").content.decode()
    assert 'href="/hosts/web-1/"' in page and 'href="/hosts/web-2/"' in page
    assert page.count('class="badge badge-late"') == 1 and page.count('class="badge badge-ok"') == 1
    late_only = browser_of.get("/hosts/?late=true").content.decode()
    assert "/hosts/web-1/" in late_only and "/hosts/web-2/" not in late_only
    named = browser_of.get("/hosts/?q=web-2").content.decode()
    assert "/hosts/web-2/" in named and "/hosts/web-1/" not in named
    odd = browser_of.get("/hosts/?late=maybe").content.decode()  # a hand-edited address: every host, and a word why
    assert "not one this page offers" in odd and "/hosts/web-1/" in odd and "/hosts/web-2/" in odd


def test_a_host_page_shows_its_facts_processes_activity_and_alerts(browser_of, fleet):
    response = browser_of.get("/hosts/web-1/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>web-1</h1>" in page and "badge-late" in page
    assert "/usr/sbin/sshd" in page and "sshd: /usr/sbin/sshd -D" in page  # its last snapshot's processes
    assert 'class="snap"' in page  # the activity chart
    assert "Alerts on web-1" in page and "never seen on this host" in page  # axon's panel, through the seam


def test_an_unknown_host_page_is_404(browser_of, fleet):
    assert browser_of.get("/hosts/nobody-here/").status_code == 404


def test_the_live_page_names_the_late_hosts_and_its_poll_too(browser_of, fleet):
    page = browser_of.get("/live-telemetry/").content.decode()
    assert 'id="late-hosts"' in page
    fragment = browser_of.get("/live-telemetry/data/").json()["fragments"]["late-hosts"]
    assert "/hosts/web-1/" in fragment and "/hosts/web-2/" not in fragment
    assert 'Late hosts <span class="count bad">1</span>' in fragment


def test_the_pages_need_a_viewer(client, nobody, fleet):
    assert client.get("/hosts/").status_code == 302
    client.force_login(nobody)
    assert client.get("/hosts/").status_code == 403
    assert client.get("/hosts/web-1/").status_code == 403


def test_a_host_page_shows_the_process_starts_between_snapshots(browser_of):
    """A start no snapshot saw lived less than the interval; one a later snapshot saw is still running."""
    client, _ = agent("web-3")
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=40)
    events = [{"hostname": "web-3", "timestamp": (start + timedelta(minutes=26)).isoformat(), "pid": 4242,
               "ppid": 1, "name": "whoami", "exe": "/usr/bin/whoami", "parent_name": "bash", "username": "root",
               "sha256": "a" * 64},
              {"hostname": "web-3", "timestamp": (start + timedelta(minutes=1)).isoformat(), "pid": 812, "ppid": 1,
               "name": "sshd", "exe": "/usr/sbin/sshd", "parent_name": "systemd", "username": "root"}]
    assert client.post("/api/telemetry/events/", events, format="json").status_code == 201
    every_five_minutes(client, "web-3", start)  # its snapshots list sshd as pid 812
    html = browser_of.get("/hosts/web-3/").content.decode()
    assert "Process starts, newest first" in html
    whoami, sshd = html.index(">whoami<"), html.index(">sshd<div")
    assert whoami < sshd
    assert "started by bash; in no snapshot: lived less than the snapshot interval" in html
    assert "started by systemd; still running at a later snapshot" in html

"""The hosts pages in Chromium on a phone: nothing wider than the screen, the late host told apart."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from telemetry.models import ProcessRecord
from tests.browser.conftest import _artifact_path
from tests.telemetry.test_hosts_api import agent, every_five_minutes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def hosts(db):
    """web-1 (a long command line, a flagged process) fell silent two hours ago; web-2 reports up to now."""
    now = timezone.now().replace(microsecond=0)
    every_five_minutes(agent("web-1")[0], "web-1", now - timedelta(hours=3))
    every_five_minutes(agent("web-2")[0], "web-2", now - timedelta(minutes=25))
    ProcessRecord.objects.filter(name="sshd", endpoint__hostname="web-1").update(
        flagged=True, status="open", score=0.9, reasons=["never seen on this host"], cmdline="sshd: " + "-o x " * 80)


def no_page_scroll(page) -> bool:
    page.wait_for_load_state("load")  # after a click the URL changes before the stylesheet is applied
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


def test_the_host_pages_fit_a_phone(page, login, analyst, hosts):
    login("ann")
    page.set_viewport_size(PHONE)
    page.goto("/hosts/")
    row = page.get_by_role("row").filter(has_text="web-1")
    expect(row.get_by_text("late", exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="web-2").get_by_text("on time")).to_be_visible()
    assert no_page_scroll(page), page.evaluate("document.scrollingElement.scrollWidth")
    page.screenshot(path=str(_artifact_path("hosts-390")), full_page=True)

    row.get_by_role("link", name="web-1").click()
    expect(page.get_by_role("heading", name="web-1", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Alerts on web-1")).to_be_visible()
    expect(page.get_by_role("heading", name="Last snapshot")).to_be_visible()
    assert no_page_scroll(page), page.evaluate("document.scrollingElement.scrollWidth")
    page.screenshot(path=str(_artifact_path("host-page-390")), full_page=True)

    page.get_by_role("link", name="Live Telemetry").click()
    late = page.get_by_role("region", name="Late hosts")
    expect(late.get_by_role("link", name="web-1")).to_be_visible()
    expect(late.get_by_role("link", name="web-2")).to_have_count(0)

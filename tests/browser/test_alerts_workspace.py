"""Issue 20: the alerts workspace in Chromium on a phone (390 px): filter by host through the address, triage from
the list and come back to the same filters, open an alert; the page never scrolls sideways."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from telemetry.models import ProcessRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fits(page: Page) -> None:
    page.wait_for_load_state("load")  # after a click the URL changes before the stylesheet is applied
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner} px window"


def test_an_analyst_filters_triages_and_opens_an_alert_on_a_phone(fleet_flagged, analyst, login):
    host = ProcessRecord.objects.filter(name="kdevtmpfsi", flagged=True).values_list("endpoint__hostname", flat=True)[0]
    page = login("ann")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts")).to_be_visible()

    page.goto(f"/alerts/?hostname={host}")
    results = page.get_by_role("region", name=re.compile(r"of \d+|No alerts match"))
    expect(page.get_by_role("heading", name=re.compile(r"^1–\d+ of \d+$"))).to_be_visible()
    row = results.get_by_role("row").filter(has_text="kdevtmpfsi")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("high")  # severity, in words beside it
    fits(page)

    row.get_by_role("checkbox").check()
    page.get_by_label("Mark selected as").select_option("acknowledged")
    page.get_by_label("Note").fill("checking with the web team")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"/alerts/\?hostname={re.escape(host)}#results$"))
    expect(page.locator("#banners")).to_contain_text("1 alert marked acknowledged.")
    expect(page.get_by_role("row").filter(has_text="kdevtmpfsi")).to_have_count(0)  # no longer open
    fits(page)

    page.get_by_label("Status").select_option("all")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"status=all&hostname={re.escape(host)}|hostname={re.escape(host)}.*status=all"))
    row = page.get_by_role("row").filter(has_text="kdevtmpfsi")
    expect(row).to_contain_text("checking with the web team")
    fits(page)

    row.get_by_role("link", name="kdevtmpfsi").click()
    expect(page.get_by_role("heading", name=f"kdevtmpfsi on {host}", level=1)).to_be_visible()
    history = page.get_by_role("region", name="Triage history")
    expect(history).to_contain_text("checking with the web team")
    expect(history).to_contain_text("ann@voltaxe.test")
    expect(page.get_by_role("region", name=re.compile("^Observations"))).to_contain_text("snapshot")
    fits(page)
    page.get_by_role("link", name="← Alerts").click()
    expect(page).to_have_url(re.compile(rf"/alerts/\?.*hostname={re.escape(host)}"))
    fits(page)

"""The Live page in Chromium between presses: what the poll brings is swapped in without a reload, and a
hidden tab polls seldom."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_live_page import pump
from tests.payloads import rich

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def figure(page: Page, label: str) -> int:
    card = page.get_by_role("region", name="Fleet figures").locator(".card").filter(has_text=label)
    return int(card.locator(".value").inner_text().replace(",", ""))


def this_hour(page: Page):
    """The chart's last snapshots bar (the current hour); its tooltip says how many snapshots it counts."""
    return page.get_by_role("img", name=re.compile("last 24 hours")).locator("rect.snap title").last


def test_a_new_snapshot_shows_in_the_table_the_figures_and_the_chart_at_the_next_poll_without_a_reload(
        fleet_flagged, analyst, agent_client, login):
    page = login("ann")
    page.evaluate("window.__sameDocument = 'no reload since the snapshot'")
    snapshots = page.get_by_role("region", name="Recent snapshots")
    expect(snapshots.get_by_role("row").filter(has_text="lab-scanner")).to_have_count(0)
    hosts = figure(page, "Hosts")
    counted = int(re.search(r": (\d+) snapshots", this_hour(page).text_content()).group(1))

    assert agent_client.post("/api/telemetry/snapshots/", rich("lab-scanner"), format="json").status_code == 201

    expect(snapshots.get_by_role("row").filter(has_text="lab-scanner")).to_be_visible(timeout=10_000)
    expect(this_hour(page)).to_have_text(re.compile(rf": {counted + 1} snapshots$"))
    expect(page.get_by_role("region", name="Fleet figures").locator(".card").filter(has_text="Hosts")
           ).to_contain_text(str(hosts + 1))
    assert page.evaluate("window.__sameDocument") == "no reload since the snapshot", "the page was reloaded"


def set_visibility(page: Page, state: str) -> None:
    page.evaluate("""state => {
        Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""", state)


def test_a_hidden_tab_polls_once_a_minute_and_at_once_when_it_is_seen_again(fleet_flagged, analyst, page, login):
    # Count the polls as the script starts them (fetch is called synchronously when a timer fires), and those in flight.
    page.add_init_script("""(() => {
        window.__polls = 0; window.__inflight = 0;
        const fetch = window.fetch;
        window.fetch = (...args) => {
            window.__polls += 1; window.__inflight += 1;
            return fetch(...args).finally(() => { window.__inflight -= 1; });
        };
    })()""")
    page.clock.install()
    login("ann")
    # From here the page's timers run only when the test moves its clock: nothing below waits for time to pass.
    page.clock.pause_at(page.evaluate("Date.now()") + 1_000)
    pump(page, lambda: page.evaluate("window.__inflight") == 0, 10, "the polls in flight to end")
    before = page.evaluate("window.__polls")
    polls = lambda: page.evaluate("window.__polls") - before  # noqa: E731

    set_visibility(page, "hidden")
    page.clock.run_for(59_000)
    assert polls() == 0, "a hidden tab polled before a minute was out"
    page.clock.run_for(1_000)
    assert polls() == 1

    set_visibility(page, "visible")
    assert polls() == 2, "the tab did not poll as soon as it was seen again"
    pump(page, lambda: page.evaluate("window.__inflight") == 0, 10, "that poll to end")
    expect(page.locator("#poll-error")).to_be_hidden()


def test_without_javascript_the_page_shows_everything_and_its_forms_post_and_render_it_again(
        fleet_flagged, admin_user, browser, live_server):
    from tests.browser.conftest import PASSWORD

    context = browser.new_context(java_script_enabled=False, base_url=live_server.url)
    try:
        page = context.new_page()
        page.goto("/live-telemetry/")
        page.get_by_label("Username").fill("sam")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Live Telemetry", level=1)).to_be_visible()
        # Everything the poll would bring is in the first render; no live controls that could not work.
        expect(this_hour(page)).to_have_text(re.compile(r": \d+ snapshots$"))
        expect(page.get_by_role("region", name="Recent snapshots").get_by_role("row")).to_have_count(11)  # header + 10
        expect(page.get_by_role("region", name="Training status")).to_contain_text("Model v1 active")
        expect(page.get_by_role("button", name="Pause")).to_be_hidden()

        # The panic button's link opens the modal (CSS :target); its form posts and the page comes back rendered.
        page.get_by_role("region", name="Training status").get_by_role("button").click()
        dialog = page.get_by_role("dialog", name="Panic Button")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Reason (optional)").fill("no script here")
        dialog.get_by_role("button", name=re.compile(r"^Retrain")).click()
        expect(page.locator("#banners")).to_contain_text("ML model retraining initiated")
        runs = page.get_by_role("region", name="Training runs")
        expect(runs.get_by_role("row").filter(has_text="dashboard")).to_contain_text("queued")
        expect(page.get_by_role("region", name="Training status").get_by_role("button")).to_contain_text("Training")
    finally:
        context.close()

"""The Live Telemetry page in Chromium: the panic button, its modal, its outcome, and live updates.

Runs against pytest-django's live_server (the test database) and, where a press must really
train, a real django-q2 worker subprocess (`manage.py qcluster`, ORM broker).
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORANGE, RED = "rgb(249, 115, 22)", "rgb(220, 38, 38)"
GREEN_BANNER, RED_BANNER = "rgb(20, 83, 45)", "rgb(127, 29, 29)"


# --- helpers: what the user sees -------------------------------------------------------------


def panic_button(page: Page):
    """The one button of the training banner (its name changes to "Training… N%" during a run)."""
    return page.get_by_role("region", name="Training status").get_by_role("button")


def dialog(page: Page):
    return page.get_by_role("dialog", name="Panic Button")


def learn_checkbox(page: Page, name: str):
    return dialog(page).get_by_role("checkbox", name=re.compile(re.escape(name)))


def retrain_now(page: Page):
    """The modal's confirm button; its name says what it will do ("Retrain and learn 1 program")."""
    return dialog(page).get_by_role("button", name=re.compile(r"^Retrain"))


def anomaly_rows(page: Page, name: str):
    return page.get_by_role("region", name="Open anomalies").get_by_role("row").filter(has_text=name)


def banner(page: Page, role: str, text: str):
    return page.locator("#banners").get_by_role(role).filter(has_text=text)


def open_modal(page: Page, *, novelties: bool = True):
    panic_button(page).click()
    expect(dialog(page)).to_be_visible()
    expect(dialog(page).locator("#learn-list[data-loaded]")).to_be_attached()  # the fresh list is in
    if novelties:  # the preview fills the list; both novelties are offered, the intruder (high risk) unticked
        expect(learn_checkbox(page, "Figma.exe")).to_be_checked()
        expect(learn_checkbox(page, "kdevtmpfsi")).not_to_be_checked()
    return dialog(page)


def focus_inside_dialog(page: Page) -> bool:
    return page.evaluate("() => { const d = document.querySelector('[role=dialog]'); "
                         "return !!d && d.contains(document.activeElement) && document.activeElement !== d; }")


def pump(page: Page, until, seconds: float, what: str):
    """Wait for a Python-side condition while letting Playwright dispatch its events (routes, responses)."""
    deadline = time.monotonic() + seconds
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        page.wait_for_timeout(50)


def open_anomalies_card(page: Page) -> int:
    card = page.get_by_role("region", name="Fleet figures").locator(".card").filter(has_text="Open anomalies")
    return int(card.locator(".value").inner_text().replace(",", ""))


def background(locator) -> str:
    return locator.evaluate("el => getComputedStyle(el).backgroundColor")


# --- the tests -------------------------------------------------------------------------------------


def test_admin_logs_in_through_the_form_and_sees_the_retrain_button_top_right_of_the_training_banner(
        fleet_flagged, admin_user, login):
    page = login("sam")
    button = panic_button(page)
    expect(button).to_be_visible()
    expect(button).to_have_text("🚨 Retrain Model")
    expect(button).to_be_enabled()
    expect(page.get_by_role("region", name="Training status")).to_contain_text("Model v1 active")
    # Orange-to-red gradient, at the top right of the training banner.
    image = button.evaluate("el => getComputedStyle(el).backgroundImage")
    assert "linear-gradient" in image and ORANGE in image and RED in image, image
    box, area = button.bounding_box(), page.get_by_role("region", name="Training status").bounding_box()
    assert area["x"] + area["width"] - (box["x"] + box["width"]) < 40, (box, area)
    assert box["y"] - area["y"] < 40, (box, area)
    assert box["x"] > area["x"] + area["width"] / 2, (box, area)


def test_modal_shows_its_texts_and_the_preview_and_closes_with_cancel_escape_and_the_overlay_keeping_focus_inside(
        fleet_flagged, admin_user, login):
    page = login("sam")
    modal = open_modal(page)
    expect(modal.get_by_role("heading", name="Panic Button")).to_be_visible()
    expect(modal).to_contain_text("will be retrained on the last")
    expect(modal).to_contain_text("will be learned as normal and stop being flagged")
    expect(modal.get_by_role("heading", name="When to use this")).to_be_visible()
    expect(modal.get_by_role("heading", name="Important")).to_be_visible()
    expect(modal.get_by_label("Reason (optional)")).to_be_visible()
    expect(modal.get_by_role("checkbox")).to_have_count(2)
    cancel, confirm = modal.get_by_role("button", name="Cancel"), retrain_now(page)
    expect(confirm).to_have_text("Retrain and learn 1 program")
    assert cancel.bounding_box()["x"] < confirm.bounding_box()["x"], "Cancel must be left of Retrain Now"

    # Focus starts inside and stays inside: Tab from the last control wraps to the first, Shift+Tab back.
    expect(cancel).to_be_focused()
    assert focus_inside_dialog(page)
    confirm.focus()
    page.keyboard.press("Tab")
    # The list's tools come first, then what will be learned, then what stays flagged.
    expect(modal.get_by_role("button", name="Tick all low-risk")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(confirm).to_be_focused()
    for _ in range(6):
        page.keyboard.press("Tab")
        assert focus_inside_dialog(page), "Tab moved the focus out of the open modal"

    cancel.click()
    expect(modal).to_be_hidden()
    expect(panic_button(page)).to_be_focused()

    open_modal(page)
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()

    # A click on the dialog's own text must not leave Escape dead.
    open_modal(page)
    modal.get_by_role("heading", name="Panic Button").click()
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()

    open_modal(page)
    page.mouse.click(8, 8)  # the dimmed overlay around the box
    expect(modal).to_be_hidden()

    # Opened through its link's address (a click before the script ran, a bookmark, Back): Cancel still closes it.
    for address in ("/live-telemetry/?again#panic-modal", "/live-telemetry/?again#panic-modal"):  # a load, then a hash change
        page.goto(address)
        expect(modal).to_be_visible()
        expect(learn_checkbox(page, "Figma.exe")).to_be_checked()
        modal.get_by_role("button", name="Cancel").click()
        expect(modal).to_be_hidden()


def test_retrain_now_shows_the_spinner_while_in_flight_then_a_green_banner_that_goes_after_five_seconds(
        fleet_flagged, admin_user, login):
    page = login("sam")
    held = []
    page.route("**/api/axon/retrain", lambda route: held.append(route))  # hold the POST until we let it go
    modal = open_modal(page)
    confirm = modal.locator("#panic-confirm")
    confirm.click()

    expect(confirm).to_have_text("Retraining...")
    expect(confirm).to_be_disabled()
    spin = confirm.locator(".icon-refresh").evaluate("el => getComputedStyle(el).animationName")
    assert spin == "spin", f"the refresh icon does not spin while the request is in flight ({spin!r})"
    pump(page, lambda: held, 5, "the retrain POST")
    page.wait_for_timeout(500)
    page.keyboard.press("Escape")  # busy: the modal stays
    page.wait_for_timeout(500)
    expect(modal).to_be_visible()
    expect(confirm).to_have_text("Retraining...")
    held[0].continue_()

    expect(modal).to_be_hidden()
    success = banner(page, "status", "Retraining initiated")
    expect(success).to_be_visible()
    shown = time.monotonic()
    expect(success).to_contain_text("ML model retraining initiated")  # the API's message
    assert background(success) == GREEN_BANNER
    # The page now shows that a run is queued instead of offering a second press.
    expect(panic_button(page)).to_contain_text("Training")

    page.wait_for_timeout(max(0, 3000 - (time.monotonic() - shown) * 1000))
    assert success.is_visible(), "the success banner went away before 3 seconds"
    expect(success).to_be_hidden(timeout=max(100, 7000 - (time.monotonic() - shown) * 1000))
    assert time.monotonic() - shown < 7.5


def test_a_press_trains_for_real_shows_progress_then_the_new_version_and_clears_only_what_was_ticked(
        fleet_flagged, admin_user, login, worker):
    worker(training_delay=5)  # a real qcluster; the run sits in "training" for 5 s so progress can be seen
    page = login("sam")
    expect(anomaly_rows(page, "Figma.exe").first).to_be_visible()
    expect(anomaly_rows(page, "kdevtmpfsi").first).to_be_visible()
    open_anomalies_before = open_anomalies_card(page)
    page.evaluate("window.__sameDocument = 'no reload since the press'")

    modal = open_modal(page)
    learn_checkbox(page, "kdevtmpfsi").uncheck()
    modal.get_by_label("Reason (optional)").fill("Figma is our new design tool")
    retrain_now(page).click()
    expect(banner(page, "status", "Retraining initiated")).to_be_visible()

    # While it runs: the stage and a progress bar, and the button shows the run instead of starting another.
    status = page.get_by_role("region", name="Training status")
    bar = status.get_by_role("progressbar", name="Training progress")
    expect(bar).to_be_visible()
    expect(status).to_contain_text(re.compile(r"Run \d+: training \(\d+%\)"), timeout=30_000)
    assert int(bar.get_attribute("aria-valuenow")) >= 45
    assert bar.locator(".bar").evaluate("el => el.getBoundingClientRect().width") > 0
    expect(panic_button(page)).to_contain_text("Training…")
    spin = panic_button(page).locator(".icon-refresh").evaluate("el => getComputedStyle(el).animationName")
    assert spin == "spin"
    expect(panic_button(page)).to_be_disabled()  # aria-disabled while the run is in flight
    panic_button(page).click(force=True)  # a user can still click it: it shows the run and starts nothing
    expect(banner(page, "status", "already in progress")).to_be_visible()
    expect(modal).to_be_hidden()

    # When it ends: the new version, without a reload.
    expect(status).to_contain_text("Model v2 active", timeout=60_000)
    expect(bar).to_be_hidden()
    expect(panic_button(page)).to_have_text("🚨 Retrain Model")
    expect(banner(page, "status", "Model v2 is active")).to_be_visible()
    assert page.evaluate("window.__sameDocument") == "no reload since the press", "the page was reloaded"

    # What was ticked left the anomalies table; what was unticked stayed.
    expect(anomaly_rows(page, "Figma.exe")).to_have_count(0)
    expect(anomaly_rows(page, "kdevtmpfsi").first).to_be_visible()
    open_anomalies_after = open_anomalies_card(page)
    assert open_anomalies_after < open_anomalies_before

    # The history tables: the run succeeded with v2; v1 can be activated again (roll back).
    runs = page.get_by_role("region", name="Training runs")
    expect(runs.get_by_role("row").filter(has_text="dashboard")).to_contain_text("succeeded")
    expect(runs.get_by_role("row").filter(has_text="dashboard")).to_contain_text("v2")
    versions = page.get_by_role("region", name="Model versions")
    expect(versions.get_by_role("row").filter(has_text="v2")).to_contain_text("active")
    expect(versions.get_by_role("row").filter(has_text="v1").get_by_role("button", name="Activate")).to_be_visible()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "after-retrain.png"), full_page=True)


def test_analyst_sees_the_button_disabled_with_the_explanation(fleet_flagged, analyst, login):
    page = login("ann")
    button = panic_button(page)
    expect(button).to_be_visible()
    expect(button).to_be_disabled()
    expect(button).to_have_accessible_description("Only security admins can retrain the model.")
    expect(page.get_by_text("Only security admins can retrain the model.")).to_be_visible()
    button.click(force=True)
    page.wait_for_timeout(300)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("#banners").get_by_role("status")).to_have_count(0)


def test_a_second_press_by_the_same_user_is_rate_limited_with_the_servers_message_in_a_red_banner(
        fleet_flagged, admin_user, login, worker):
    worker()
    page = login("sam")
    open_modal(page)
    retrain_now(page).click()
    expect(banner(page, "status", "Retraining initiated")).to_be_visible()
    status = page.get_by_role("region", name="Training status")
    expect(status).to_contain_text("Model v2 active", timeout=60_000)
    expect(panic_button(page)).to_have_text("🚨 Retrain Model")

    # v2 learned both novelties: nothing is left to offer.
    expect(open_modal(page, novelties=False)).to_contain_text("Nothing has been flagged since the model last learned")
    expect(retrain_now(page)).to_have_text("Retrain, learn nothing new")
    retrain_now(page).click()
    error = banner(page, "alert", "Try again in")
    expect(error).to_be_visible()
    expect(error).to_contain_text(re.compile(r"Retrain limit reached: you have pressed the panic button too often\. "
                                             r"Try again in \d+ seconds\."))
    assert background(error) == RED_BANNER
    expect(dialog(page)).to_be_hidden()
    # It counts down, and the button waits with it.
    first = error.text_content()
    expect(error).not_to_have_text(first, timeout=5000)
    expect(panic_button(page)).to_have_attribute("aria-disabled", "true")
    panic_button(page).click(force=True)  # a click anyway opens nothing
    expect(dialog(page)).to_be_hidden()
    # Nothing started: the runs table still has the command's run and the one press.
    expect(page.get_by_role("region", name="Training runs").get_by_role("row")).to_have_count(3)  # header + 2
    expect(status).to_contain_text("Model v2 active")


def test_a_failed_poll_shows_a_notice_keeps_the_last_data_and_recovers(fleet_flagged, analyst, login):
    page = login("ann")
    failures = []

    def fail_once(route):
        if not failures:
            failures.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    cards = page.get_by_role("region", name="Fleet figures")
    records_before = cards.text_content()
    rows_before = anomaly_rows(page, "").count()
    assert rows_before > 0
    page.route("**/live-telemetry/data/", fail_once)

    notice = page.get_by_text(re.compile(r"Live updates failed at .*showing the last data and retrying"))
    expect(notice).to_be_visible(timeout=8_000)  # the next 5-second poll fails
    assert failures
    expect(cards).to_have_text(records_before)
    expect(anomaly_rows(page, "Figma.exe").first).to_be_visible()
    assert anomaly_rows(page, "").count() == rows_before

    # Pause, then Resume polls at once; this time it succeeds and the notice goes.
    toggle = page.get_by_role("button", name="Pause")
    toggle.click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Paused · updated"))).to_be_visible()
    page.get_by_role("button", name="Resume").click()
    expect(notice).to_be_hidden()
    expect(page.get_by_text(re.compile(r"^Live · updated"))).to_be_visible()
    expect(anomaly_rows(page, "Figma.exe").first).to_be_visible()

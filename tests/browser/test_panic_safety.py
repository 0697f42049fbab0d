"""The panic button's safety in Chromium: risky items stay unticked unless confirmed, the button says what it
will do, a press sends exactly the ticked keys, alerts are grouped and can be triaged, and the page's small faults."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from axon.models import Alert, TrainingRun
from axon.services.selection import retrain_preview
from tests import fleet
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_live_page import RED, dialog, learn_checkbox, open_modal, panic_button, retrain_now

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def keys() -> dict[str, str]:
    return {i["name"]: i["key"] for i in retrain_preview()["will_learn"]}


def test_a_high_risk_item_is_unticked_and_ticking_it_needs_a_second_yes_that_names_the_reason(
        fleet_flagged, admin_user, login):
    page = login("sam")
    modal = open_modal(page)
    intruder = learn_checkbox(page, "kdevtmpfsi")
    expect(modal).to_contain_text("High risk:")
    expect(modal).to_contain_text("runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)")
    expect(retrain_now(page)).to_have_text("Retrain and learn 1 program")

    # A click alone does not tick it: a confirmation names why it is risky.
    intruder.click()
    ask = modal.get_by_role("alertdialog")
    expect(ask).to_be_visible()
    expect(ask).to_contain_text("kdevtmpfsi is high risk: runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)")
    expect(ask).to_contain_text("started by nginx, a web server")
    expect(intruder).not_to_be_checked()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "modal-high-risk-confirmation.png"))
    ask.get_by_role("button", name="No, keep it flagged").click()
    expect(ask).to_be_hidden()
    expect(intruder).not_to_be_checked()
    expect(retrain_now(page)).to_have_text("Retrain and learn 1 program")

    intruder.click()
    ask.get_by_role("button", name="Yes, learn it as normal").click()
    expect(intruder).to_be_checked()
    expect(retrain_now(page)).to_have_text("Retrain and learn 2 programs")
    learn_checkbox(page, "Figma.exe").uncheck()
    intruder.uncheck()
    expect(retrain_now(page)).to_have_text("Retrain, learn nothing new")
    # Unticked, it needs the confirmation again.
    intruder.click()
    expect(ask).to_be_visible()
    expect(intruder).not_to_be_checked()


def test_a_press_sends_exactly_the_ticked_keys_and_the_run_records_them(fleet_flagged, admin_user, login):
    page = login("sam")
    wanted = keys()
    open_modal(page)
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/axon/retrain") else None)
    retrain_now(page).click()
    expect(page.locator("#banners").get_by_role("status").filter(has_text="Retraining initiated")).to_be_visible()
    assert sent == [{"reason": "", "approve": [wanted["Figma.exe"]], "confirm_high_risk": []}]
    run = TrainingRun.objects.get(trigger="dashboard")
    assert [a["key"] for a in run.approved] == [wanted["Figma.exe"]]


def test_a_confirmed_high_risk_tick_is_sent_as_its_second_step_and_select_all_leaves_it_alone(
        fleet_flagged, admin_user, login):
    page = login("sam")
    wanted = keys()
    modal = open_modal(page)
    intruder = learn_checkbox(page, "kdevtmpfsi")
    # With the script the dialog is the second step: the row's own box (the no-script step) is not shown.
    expect(modal.locator(f'input[name=confirm_high_risk][value="{wanted["kdevtmpfsi"]}"]')).to_be_hidden()

    modal.get_by_role("button", name="Untick all").click()
    expect(retrain_now(page)).to_have_text("Retrain, learn nothing new")
    modal.get_by_role("button", name="Tick all low-risk").click()
    expect(intruder).not_to_be_checked()
    expect(retrain_now(page)).to_have_text("Retrain and learn 1 program")
    modal.get_by_label("Host").fill("no-such-host")
    expect(intruder).to_be_hidden()
    modal.get_by_label("Host").fill("")

    intruder.click()
    modal.get_by_role("alertdialog").get_by_role("button", name="Yes, learn it as normal").click()
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/axon/retrain") else None)
    retrain_now(page).click()
    expect(page.locator("#banners").get_by_role("status").filter(has_text="Retraining initiated")).to_be_visible()
    assert [body["confirm_high_risk"] for body in sent] == [[wanted["kdevtmpfsi"]]]
    assert set(sent[0]["approve"]) == {wanted["Figma.exe"], wanted["kdevtmpfsi"]}
    run = TrainingRun.objects.get(trigger="dashboard")
    assert {a["key"] for a in run.approved} == {wanted["Figma.exe"], wanted["kdevtmpfsi"]}


def test_alerts_are_grouped_with_counts_and_an_analyst_marks_one_malicious_without_javascript_help(
        fleet_flagged, analyst, login):
    page = login("ann")
    region = page.get_by_role("region", name="Open anomalies")
    row = region.get_by_role("row").filter(has_text="kdevtmpfsi")
    expect(row).to_have_count(1)  # one row per program, path, parent and host: not one per snapshot
    count = int(row.locator("td.num").first.inner_text())
    assert count > 1
    expect(row).to_contain_text("High risk:")
    row.get_by_role("checkbox").check()
    region.get_by_label("Mark selected as").select_option("malicious")
    region.get_by_label("Note").fill("coin miner dropped through the web server")
    region.get_by_role("button", name="Apply").click()
    expect(page.locator("#banners")).to_contain_text("1 alert(s) marked malicious.")
    expect(region.get_by_role("row").filter(has_text="kdevtmpfsi")).to_contain_text("malicious")
    alert = Alert.objects.get()
    assert (alert.name, alert.status, alert.updated_by_name) == ("kdevtmpfsi", "malicious", "ann@voltaxe.test")
    assert "kdevtmpfsi" not in {i["name"] for i in retrain_preview()["will_learn"]}


def test_the_runs_table_fits_its_panel_and_an_empty_open_anomalies_card_is_not_red(db, admin_user, login):
    fleet.history(days=2)
    for _ in range(3):
        assert fleet.train(user=admin_user, reason="x" * 80).status == "succeeded"
    TrainingRun.objects.update(triggered_by_name="a.very.long.name.of.a.security.administrator@voltaxe.example")
    page = login("sam")
    panel = page.get_by_role("region", name="Training runs")
    version = panel.get_by_role("columnheader", name="Version")
    expect(version).to_be_visible()
    box, area = version.bounding_box(), panel.bounding_box()
    assert box["x"] + box["width"] <= area["x"] + area["width"], (box, area)
    assert panel.evaluate("el => el.scrollWidth <= el.clientWidth"), "the runs table overflows its panel"
    expect(panel.get_by_role("row").filter(has_text="v3")).to_be_visible()

    card = page.get_by_role("region", name="Fleet figures").locator(".card").filter(has_text="Open anomalies")
    expect(card.locator(".value")).to_have_text("0")
    color = card.locator(".value").evaluate("el => getComputedStyle(el).color")
    assert color != "rgb(248, 113, 113)" and color != RED, color


def test_the_already_in_progress_notice_goes_when_the_run_ends(fleet_flagged, admin_user, login):
    run = TrainingRun.objects.create(trigger="api", status="running", stage="training", progress=50)
    page = login("sam")
    panic_button(page).click(force=True)
    notice = page.locator("#banners").get_by_role("status").filter(has_text="already in progress")
    expect(notice).to_be_visible()
    expect(dialog(page)).to_be_hidden()
    page.wait_for_timeout(5500)  # longer than the success banners live: this one is about the run
    expect(notice).to_be_visible()
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", stage="done", progress=100, message="Model v9 is active.")
    expect(notice).to_be_hidden(timeout=10_000)
    expect(panic_button(page)).to_have_text(re.compile("Retrain Model"))


def test_what_a_person_changes_while_the_list_reloads_stays_as_they_left_it(fleet_flagged, admin_user, login):
    page = login("sam")
    held = []
    page.route("**/live-telemetry/preview/", lambda route: held.append(route))
    panic_button(page).click()
    expect(dialog(page)).to_be_visible()
    learn_checkbox(page, "Figma.exe").uncheck()  # the list the page was loaded with
    learn_checkbox(page, "kdevtmpfsi").click()
    ask = dialog(page).get_by_role("alertdialog")
    expect(ask).to_be_visible()
    deadline = 50
    while not held and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    held[0].continue_()
    expect(dialog(page).locator("#learn-list[data-loaded]")).to_be_attached()
    expect(learn_checkbox(page, "Figma.exe")).not_to_be_checked()
    expect(ask).to_be_visible()  # still asking, about the reloaded box
    ask.get_by_role("button", name="Yes, learn it as normal").click()
    expect(learn_checkbox(page, "kdevtmpfsi")).to_be_checked()
    expect(retrain_now(page)).to_have_text("Retrain and learn 1 program")

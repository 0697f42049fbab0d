"""The panic button without JavaScript, in Chromium with scripts off (issue 20 §5, §8): the modal opens from its
link, a high-risk tick alone is refused with a sentence and the modal comes back as the person left it, and the
row's own "Yes, I checked why" box is the second step."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from axon.models import TrainingRun
from axon.services.selection import retrain_preview
from tests.browser.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_script_page(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url,
                                  java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_a_high_risk_tick_needs_the_rows_own_confirmation_and_a_refusal_keeps_the_form(
        fleet_flagged, admin_user, no_script_page):
    page = no_script_page
    keys = {i["name"]: i["key"] for i in retrain_preview()["will_learn"]}
    page.goto("/live-telemetry/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/live-telemetry/$"))

    page.goto("/live-telemetry/#panic-modal")  # the button's link; CSS opens the modal
    modal = page.get_by_role("dialog", name="Panic Button")
    expect(modal).to_be_visible()
    intruder = modal.locator(f'input[name=approve][value="{keys["kdevtmpfsi"]}"]')
    confirm = modal.locator(f'input[name=confirm_high_risk][value="{keys["kdevtmpfsi"]}"]')
    expect(confirm).to_be_visible()  # without the script, the row's box is the second step
    intruder.check()
    modal.locator(f'input[name=approve][value="{keys["Figma.exe"]}"]').uncheck()
    modal.get_by_label("Reason (optional)").fill("pen-test tool")
    modal.get_by_role("button", name=re.compile("^Retrain")).click()

    expect(page.locator("#banners")).to_contain_text("high-risk item was ticked without the second step")
    expect(modal).to_be_visible()  # back as the person left it
    expect(intruder).to_be_checked()
    expect(modal.locator(f'input[name=approve][value="{keys["Figma.exe"]}"]')).not_to_be_checked()
    expect(modal.get_by_label("Reason (optional)")).to_have_value("pen-test tool")
    assert not TrainingRun.objects.filter(trigger="dashboard").exists()

    confirm.check()
    modal.get_by_role("button", name=re.compile("^Retrain")).click()
    expect(page.locator("#banners")).to_contain_text("ML model retraining initiated")
    run = TrainingRun.objects.get(trigger="dashboard")
    assert [a["key"] for a in run.approved] == [keys["kdevtmpfsi"]] and run.reason == "pen-test tool"

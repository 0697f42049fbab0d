"""The page's safety steps and states in Chromium (issue 20 §6, §8): Revoke and Activate ask first and say what
will change, the model panel agrees with itself after a rollback, an expired session stops the poll and says so,
and every banner closes, the server's included."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from axon.models import Approval, ModelVersion
from tests import fleet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def approved(db, admin_user):
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)
    assert fleet.train(user=admin_user).status == "succeeded"  # v2, approving the low-risk novelty
    return Approval.objects.get()


def test_revoke_asks_first_saying_what_will_change_and_cancel_changes_nothing(approved, admin_user, login):
    page = login("sam")
    asked = []

    def answer(dialog, accept):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    panel = page.get_by_role("region", name="Approvals")
    page.once("dialog", lambda d: answer(d, False))
    panel.get_by_role("button", name="Revoke").click()
    expect(panel.get_by_role("row").filter(has_text=approved.name)).to_be_visible()
    assert asked and asked[0].startswith(f"Revoke? {approved.name} on {approved.hostname}")
    assert "flagged again" in asked[0] and "active model still lets it through" in asked[0]
    assert Approval.objects.filter(pk=approved.pk).exists()

    page.once("dialog", lambda d: answer(d, True))
    panel.get_by_role("button", name="Revoke").click()
    expect(page.locator("#banners")).to_contain_text(f"Revoked the approval of {approved.name}")
    assert not Approval.objects.filter(pk=approved.pk).exists()

    # The server's banner closes, like the script's.
    notice = page.locator("#banners .banner").filter(has_text="Revoked the approval")
    notice.get_by_role("link", name="Dismiss").click()
    expect(notice).to_have_count(0)


def test_a_rollback_asks_first_and_the_model_panel_then_agrees_with_itself(approved, admin_user, login):
    page = login("sam")
    asked = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    versions = page.get_by_role("region", name="Model versions")
    versions.get_by_role("row").filter(has_text="v1").get_by_role("button", name="Activate").click()
    status = page.get_by_role("region", name="Training status")
    expect(status).to_contain_text("Model v1 active")
    assert asked and asked[0].startswith("Activate v1? Model v1 (trained") and "in place of v2." in asked[0]
    # The last run made v2; the panel says v1 is the one scoring now, not only "v2 is active".
    expect(status.locator("#last-run")).to_contain_text("Since then v1 was activated by hand and is the one scoring.")
    assert ModelVersion.objects.get(is_active=True).version == 1


def test_an_expired_session_stops_the_poll_and_says_signed_out_with_a_link(fleet_flagged, analyst, login):
    page = login("ann")
    page.context.clear_cookies()
    status = page.locator("#poll-status")
    expect(status).to_contain_text("Signed out: sign in again", timeout=15_000)
    expect(status.get_by_role("link", name="sign in again")).to_have_attribute("href", "/login/?next=%2Flive-telemetry%2F")
    expect(page.locator("#poll-error")).to_be_hidden()  # not "Unexpected token '<'"
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/live-telemetry/data/" in r.url else None)
    page.wait_for_timeout(6000)  # longer than one poll interval: no more polling
    assert requests == []

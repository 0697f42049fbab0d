"""A high-risk key is learned only with a second, explicit step, at every door (issue 20 §5, API.md
`confirm_high_risk`): the API, the page's form without JavaScript and the admin's review page refuse a
high-risk tick that comes alone, name the key and why, start nothing, and keep what the person ticked."""
from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from axon.models import TrainingRun
from axon.services.selection import retrain_preview
from tests import fleet

pytestmark = pytest.mark.django_db
URL = "/api/axon/retrain"


@pytest.fixture
def flagged(db):
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)
    return {i["name"]: i for i in retrain_preview()["will_learn"]}


def test_the_api_refuses_a_high_risk_key_without_its_confirmation_and_names_it_with_its_reasons(admin_client, flagged):
    intruder, editor = flagged["kdevtmpfsi"], flagged["Figma.exe"]
    assert intruder["risk"] == "high" and editor["risk"] == "low"
    before = TrainingRun.objects.count()

    refused = admin_client.post(URL, {"approve": [editor["key"], intruder["key"]]}, format="json")
    assert refused.status_code == 400
    body = refused.json()
    assert body["detail"].startswith("confirm_high_risk: 1 high-risk item was ticked without the second step, "
                                     "for example kdevtmpfsi on ")
    assert body["detail"].endswith("Confirm each one you mean to learn as normal, or untick it. Nothing was started.")
    [named] = body["errors"]["confirm_high_risk"]
    assert named.startswith(f"{intruder['key']}: kdevtmpfsi on ")
    assert "runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)" in named
    assert TrainingRun.objects.count() == before
    assert AuditEvent.objects.filter(action="retrain.invalid").exists()

    # Confirming a key that is not ticked approves nothing more; confirming the low-risk one is harmless.
    alone = admin_client.post(URL, {"approve": [editor["key"]], "confirm_high_risk": [intruder["key"], editor["key"]]},
                              format="json")
    assert alone.status_code == 200, alone.json()
    run = TrainingRun.objects.get(pk=alone.json()["run_id"])
    assert [a["key"] for a in run.approved] == [editor["key"]]


def test_with_the_confirmation_the_api_approves_the_high_risk_key(admin_client, flagged):
    intruder = flagged["kdevtmpfsi"]
    response = admin_client.post(URL, {"approve": [intruder["key"]], "confirm_high_risk": [intruder["key"]]},
                                 format="json")
    assert response.status_code == 200, response.json()
    run = TrainingRun.objects.get(pk=response.json()["run_id"])
    assert [a["key"] for a in run.approved] == [intruder["key"]]


def test_a_default_press_never_needs_a_confirmation_and_never_learns_high_risk(admin_client, flagged):
    response = admin_client.post(URL, {}, format="json")
    assert response.status_code == 200
    approved = {a["key"] for a in TrainingRun.objects.get(pk=response.json()["run_id"]).approved}
    assert flagged["Figma.exe"]["key"] in approved and flagged["kdevtmpfsi"]["key"] not in approved


def test_the_preview_lists_what_will_be_learned_first_and_says_why_each_was_flagged(flagged):
    rows = retrain_preview()["will_learn"]
    defaults = [r["default"] for r in rows]
    assert defaults == sorted(defaults, reverse=True), "a ticked item sits below an unticked one"
    assert all(r["reasons"] for r in rows), [r["name"] for r in rows if not r["reasons"]]


def test_the_pages_form_without_javascript_needs_the_rows_own_confirmation(client, admin_user, flagged):
    client.force_login(admin_user)
    intruder = flagged["kdevtmpfsi"]
    page = client.get("/live-telemetry/").content.decode()
    assert f'name="confirm_high_risk" value="{intruder["key"]}"' in page
    assert "High risk, not ticked" not in page  # it can be ticked: it says what ticking it takes

    refused = client.post("/live-telemetry/retrain/", {"approve": [intruder["key"]], "reason": "pen test"})
    assert refused.status_code == 302 and refused["Location"] == "/live-telemetry/#panic-modal"
    again = client.get(refused["Location"]).content.decode()
    assert "high-risk item was ticked without the second step" in again
    assert not TrainingRun.objects.filter(trigger="dashboard").exists()
    # The modal opens again as the person left it: their ticks (the default one unticked) and reason.
    assert f'value="{intruder["key"]}" data-program=' in again
    assert re.search(rf'value="{intruder["key"]}"[^>]*checked>', again)
    assert not re.search(rf'value="{flagged["Figma.exe"]["key"]}"[^>]*checked>', again)
    assert 'value="pen test"' in again
    fresh = client.get("/live-telemetry/").content.decode()  # once: a later visit shows the preview's own ticks
    assert re.search(rf'value="{flagged["Figma.exe"]["key"]}"[^>]*checked>', fresh)

    client.post("/live-telemetry/retrain/", {"approve": [intruder["key"]], "confirm_high_risk": [intruder["key"]]})
    run = TrainingRun.objects.get(trigger="dashboard")
    assert [a["key"] for a in run.approved] == [intruder["key"]]


def test_the_admin_review_refuses_an_unconfirmed_tick_and_gives_the_form_back_as_it_was(client, admin_user, flagged):
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    intruder, editor = flagged["kdevtmpfsi"], flagged["Figma.exe"]
    review = client.get("/admin/axon/trainingrun/retrain/").content.decode()
    assert f'name="confirm_high_risk" value="{intruder["key"]}">' in review

    # The person unticked the editor, ticked the intruder without confirming it, and gave a reason.
    refused = client.post("/admin/axon/trainingrun/retrain/", {"approve": [intruder["key"]], "reason": "pen test tool"})
    html = refused.content.decode()
    assert refused.status_code == 200 and not TrainingRun.objects.filter(trigger="admin").exists()
    assert "high-risk item was ticked without the second step" in html
    assert f'value="{intruder["key"]}" id="approve-{intruder["key"]}" checked' in html
    assert f'value="{editor["key"]}" id="approve-{editor["key"]}">' in html  # still unticked, as they left it
    assert 'value="pen test tool"' in html

    client.post("/admin/axon/trainingrun/retrain/", {"approve": [intruder["key"]], "reason": "pen test tool",
                                                     "confirm_high_risk": [intruder["key"]]})
    run = TrainingRun.objects.get(trigger="admin")
    assert [a["key"] for a in run.approved] == [intruder["key"]] and run.reason == "pen test tool"

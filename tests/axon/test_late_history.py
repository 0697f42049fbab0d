"""Issue 19 point 6: history that arrives late counts late.

A stolen agent key sent two days of hourly snapshots with a new binary in seconds: each was
flagged, yet the preview offered the binary as low risk, ticked, "first seen 2 days ago". Now
such history is stored and scored but holds the item back from a default press, saying why.
"""
from __future__ import annotations

import re

import pytest

from axon.models import Approval
from telemetry.models import AgentKey
from tests import fleet
from tests.axon.test_exact_approvals import agent, post, press, snapshot

pytestmark = pytest.mark.django_db
PREVIEW = "/api/axon/retrain/preview/"
BACKDATED = {"name": "syncd", "exe": "/usr/local/bin/syncd", "username": "builder"}
ON_TIME = {"name": "obsidian", "exe": "/opt/obsidian/obsidian", "username": "builder"}


def test_backdated_history_is_not_ticked_by_default_and_a_default_press_leaves_it_flagged(admin_client):
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    build = agent("build-01")
    batch = [snapshot("build-01", [BACKDATED], seconds_ago=3600 * hours + 30) for hours in range(48, 0, -1)]
    response = build.post("/api/telemetry/snapshots/batch/", batch, format="json")
    assert response.status_code == 201 and all("snapshot_id" in r for r in response.json()["results"]), response.content
    assert "obsidian" in post(build, snapshot("build-01", [ON_TIME], seconds_ago=20))

    items = {i["name"]: i for i in admin_client.get(PREVIEW).json()["will_learn"]}
    late, fresh = items["syncd"], items["obsidian"]
    assert late["risk"] == "low" and late["default"] is False, late
    (held,) = late["held_reasons"]  # how long the batch took to store depends on the machine
    assert re.fullmatch(r"48 observations arrived late: 2 days of history arrived in \d+ seconds?; "
                        r"tick it only if you know the host was offline", held), held
    assert fresh["default"] is True and fresh["held_reasons"] == []

    run = press(admin_client, {})
    assert [a["name"] for a in run.approved] == ["obsidian"]
    assert not Approval.objects.filter(name="syncd").exists()
    assert "syncd" in post(build, snapshot("build-01", [BACKDATED], seconds_ago=5))


def test_an_agent_key_cannot_be_deleted_so_its_late_history_stays_late(admin_user, client):
    """Late history is told by the key that delivered it; a deleted key would have made it count as on time."""
    admin_user.is_superuser = admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    key, _ = AgentKey.objects.create_key(name="build-01")
    assert client.get(f"/admin/telemetry/agentkey/{key.pk}/delete/").status_code == 403
    changelist = client.get("/admin/telemetry/agentkey/").content.decode()
    assert "delete_selected" not in changelist
    assert AgentKey.objects.filter(pk=key.pk).exists()

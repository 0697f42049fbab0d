"""`manage.py retrain --list` and `--approve KEY ...` in a real subprocess: the same rule as the button."""
import re

import pytest

from axon.models import Approval, TrainingRun
from tests import fleet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def flagged(db):
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)


def listed(stdout: str) -> dict[str, tuple[str, str]]:
    """name -> (key, risk), with * marking what is approved by default."""
    rows = re.findall(r"^([* ]) ([0-9a-f]{24})  (low|high)\s+(\S+)", stdout, re.M)
    return {name: (key, risk, mark == "*") for mark, key, risk, name in rows}


def test_list_prints_every_candidate_with_its_key_and_risk_and_starts_nothing(manage, flagged):
    result = manage("retrain", "--list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 item(s) a press could approve now (active model: 1)")
    items = listed(result.stdout)
    assert {n: (r, d) for n, (_, r, d) in items.items()} == {"Figma.exe": ("low", True), "kdevtmpfsi": ("high", False)}
    assert "risk: runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)" in result.stdout
    assert TrainingRun.objects.count() == 1  # the fixture's first model only


def test_approve_learns_exactly_the_given_keys(manage, flagged):
    items = listed(manage("retrain", "--list").stdout)
    intruder_key = items["kdevtmpfsi"][0]
    unconfirmed = manage("retrain", "--sync", "--approve", intruder_key)
    assert unconfirmed.returncode != 0 and "high-risk item was ticked without the second step" in unconfirmed.stderr
    assert TrainingRun.objects.count() == 1
    result = manage("retrain", "--sync", "--approve", intruder_key, "--confirm-high-risk", intruder_key,
                    "--reason", "checked by hand")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"It approves 1 item(s): {intruder_key} (kdevtmpfsi on api-01)" in result.stdout
    run = TrainingRun.objects.get(trigger="command", reason="checked by hand")
    assert run.status == "succeeded" and [a["key"] for a in run.approved] == [intruder_key]
    assert list(Approval.objects.values_list("name", flat=True)) == ["kdevtmpfsi"]


def test_without_approve_the_command_takes_the_low_risk_defaults_and_bad_input_is_a_clear_error(manage, flagged):
    bad = manage("retrain", "--reason", "x" * 1001)
    assert bad.returncode != 0 and "Nothing was started." in bad.stderr
    result = manage("retrain", "--sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "It approves 1 item(s):" in result.stdout and "(figma.exe on laptop-ana)" in result.stdout
    assert list(Approval.objects.values_list("name", flat=True)) == ["figma.exe"]


def test_list_says_why_an_item_is_not_ticked(manage, flagged):
    from axon.models import Alert

    key = listed(manage("retrain", "--list").stdout)["Figma.exe"][0]
    Alert.objects.create(key=key, hostname="laptop-ana", name="figma.exe", status="acknowledged", note="checking")
    result = manage("retrain", "--list")
    assert listed(result.stdout)["Figma.exe"][2] is False
    assert "not ticked: acknowledged: someone is looking into it (checking)" in result.stdout


def test_help_needs_no_environment(tmp_path):
    """`--help` answers on a machine where nothing is configured yet (no SECRET_KEY, no DEBUG)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(REPO / "manage.py"), "retrain", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--confirm-high-risk KEY" in result.stdout and "Traceback" not in result.stderr
    # Anything but help still insists on a secret.
    refused = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "SECRET_KEY must be set when DEBUG is off." in refused.stderr

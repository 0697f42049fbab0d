"""An unmodified Voltaxe Sentinel reporting to Voltaxe, played by a client that behaves exactly like it.

What the Sentinel does (a Go program; only its behaviour is reproduced here): its one credential
is the server URL (`API_SERVER=https://agent:<key>@host`), which Go's HTTP client sends as
`Authorization: Basic` on every request. At start it reports the host (OS, pid and name per
process, no time) to /ingest/snapshot and a process snapshot to /ingest/process-snapshot
(`hostname`, RFC 3339 whole-second UTC `timestamp`, process names with duplicates kept;
`"processes": null` when listing fails), then one every 5 minutes; network snapshots every 30 s;
its own rootkit and vulnerability reports once; polls /command/poll?hostname= every 10 s. Any
status other than 200 is a warning to it, and it never retries.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from telemetry.models import AgentHost, AgentKey, Endpoint, ProcessRecord, Snapshot
from tests import fleet
from tests.harness import Gunicorn

# What `ps` shows on an ordinary Linux build host of the test fleet, as names only, duplicates kept.
BUILD_HOST_NAMES = ["systemd", "systemd-journald", "sshd", "cron", "rsyslogd", "dockerd",
                    "kworker/0:1-events", "kworker/0:1-events", "ksoftirqd/0", "ksoftirqd/0"]
MAC_NAMES = ["launchd", "kernel_task", "WindowServer", "Finder", "Dock", "mds"]


class Sentinel:
    """The agent's side of the conversation, over plain urllib, with the key only in the server URL."""

    def __init__(self, server_url: str, hostname: str):
        parts = urllib.parse.urlsplit(server_url)
        self.base = urllib.parse.urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", "", "", ""))
        # Go's client turns the URL's user:password into this header on every request, unasked, and
        # does nothing with a 401's challenge.
        userinfo = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password)}"
        self.authorization = "Basic " + base64.b64encode(userinfo.encode()).decode()
        self.hostname = hostname
        self.warnings: list[tuple[str, int, dict]] = []

    def _call(self, method: str, path: str, body=None) -> tuple[int, dict | list]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1",
                                                  "Authorization": self.authorization})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                code, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        answer = json.loads(raw)  # never an HTML page
        if code != 200:
            self.warnings.append((path, code, answer))
        return code, answer

    @staticmethod
    def stamp(minutes_ago: int) -> str:
        at = timezone.now().replace(microsecond=0) - timedelta(minutes=minutes_ago)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def host_report(self, os_name: str, names: list[str]):
        return self._call("POST", "/ingest/snapshot", {
            "hostname": self.hostname, "os": os_name, "architecture": "arm64",
            "processes": [{"pid": 100 + i, "name": n} for i, n in enumerate(names)],
        })

    def process_snapshot(self, minutes_ago: int, names: list[str] | None):
        return self._call("POST", "/ingest/process-snapshot",
                          {"hostname": self.hostname, "timestamp": self.stamp(minutes_ago), "processes": names})

    def side_paths(self):
        return {
            "poll": self._call("GET", "/command/poll?" + urllib.parse.urlencode({"hostname": self.hostname})),
            "network": self._call("POST", "/ingest/network-snapshot",
                                  {"hostname": self.hostname, "connections": [{"laddr": "10.0.0.5:22", "status": "LISTEN"}]}),
            "rootkit": self._call("POST", "/ingest/rootkit_event", {"hostname": self.hostname, "detected": False}),
            "vulnerability": self._call("POST", "/ingest/vulnerability_event",
                                        {"hostname": self.hostname, "cve": "CVE-0000-0000", "severity": "low"}),
        }


def _key_for(hostname: str) -> str:
    agent, key = AgentKey.objects.create_key(name=hostname, scope=AgentKey.Scope.HOSTS)
    AgentHost.objects.create(hostname=hostname, key=agent)
    return key


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_unmodified_sentinel_reports_through_basic_credentials_in_its_server_url(subprocess_env):
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    key = _key_for("build-01")
    with Gunicorn(subprocess_env, workers=2) as server:
        agent = Sentinel(f"http://agent:{urllib.parse.quote(key)}@127.0.0.1:{server.port}", "build-01")
        # Start-up, then the 5-minute cadence compressed: timestamps 5 minutes apart; polls and
        # network snapshots in between, as the agent sends them.
        assert agent.host_report("linux", BUILD_HOST_NAMES)[0] == 200
        answers = []
        for minutes_ago in (20, 15, 10, 5, 0):
            names = BUILD_HOST_NAMES + (["xmrig"] if minutes_ago == 0 else [])
            answers.append(agent.process_snapshot(minutes_ago, names))
            side = agent.side_paths()
            assert side["poll"] == (200, [])
            for what in ("network", "rootkit", "vulnerability"):
                code, body = side[what]
                assert code == 404 and "is not collected by this server" in body["detail"], (what, code, body)

        # Every process snapshot stored as sent (names with duplicates), 201 per the contract.
        assert [code for code, _ in answers] == [201] * 5
        assert Snapshot.objects.filter(endpoint__hostname="build-01", agent__name="build-01").count() == 5
        newest = Snapshot.objects.get(pk=answers[-1][1]["snapshot_id"])
        assert newest.process_count == len(BUILD_HOST_NAMES) + 1
        assert ProcessRecord.objects.filter(snapshot=newest, name="ksoftirqd/0").count() == 2
        # Scored with the model by name rarity alone: the unknown program is flagged, the host's usual ones are not.
        flagged = [a["name"] for a in answers[-1][1]["anomalies"]]
        assert flagged == ["xmrig"], answers[-1][1]
        assert all(body["model_version"] == 1 and body["anomalies"] == [] for _, body in answers[:-1]), answers[:-1]
        # The side paths stored nothing and the page is told this host sends names only.
        assert Endpoint.objects.get(hostname="build-01").names_only is True
        assert {"build-01"} <= set(_summary(server)["names_only_hosts"])

        # A failed process listing arrives as null: a clear 400, nothing stored.
        code, body = agent.process_snapshot(1, None)
        assert code == 400 and "could not list its processes" in body["detail"], body
    assert Snapshot.objects.filter(endpoint__hostname="build-01").count() == 5 + _history("build-01")


def _history(hostname: str) -> int:
    return Snapshot.objects.filter(endpoint__hostname=hostname, agent__isnull=True).count()


def _summary(server: Gunicorn) -> dict:
    from tests.conftest import _user

    _user("sentinel-analyst", "Analyst")
    credentials = {"username": "sentinel-analyst", "password": "correct-horse-battery"}
    code, tokens = server.request("POST", "/api/auth/token/", credentials)
    assert code == 200, tokens
    code, body = server.request("GET", "/api/telemetry/summary/", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert code == 200, body
    return body


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_mac_sentinel_is_not_guessed_to_be_linux_and_a_wrong_key_is_told_why(subprocess_env):
    key = _key_for("mac-studio")
    with Gunicorn(subprocess_env, workers=2) as server:
        agent = Sentinel(f"http://agent:{key}@127.0.0.1:{server.port}", "mac-studio")
        code, body = agent.host_report("darwin", MAC_NAMES)
        assert code == 200 and body["os"] == "darwin"
        assert agent.process_snapshot(5, MAC_NAMES)[0] == 201
        assert agent.process_snapshot(0, MAC_NAMES)[0] == 201
        assert Endpoint.objects.get(hostname="mac-studio").os == "darwin"
        # Normalized as macOS names are (case-folded), not as Linux ones.
        stored = set(ProcessRecord.objects.filter(endpoint__hostname="mac-studio").values_list("name_norm", flat=True))
        assert stored == {n.lower() for n in MAC_NAMES}

        # The same Sentinel configured with a revoked key, a made-up key, or a person's password.
        AgentKey.objects.filter(name="mac-studio").update(revoked=True)
        assert agent.process_snapshot(1, MAC_NAMES)[0] == 401
        from tests.conftest import _user

        _user("mallory", "Security Admin")
        for credentials in ("agent:not-a-key", "mallory:correct-horse-battery"):
            other = Sentinel(f"http://{credentials}@127.0.0.1:{server.port}", "mac-studio")
            code, body = other.process_snapshot(2, MAC_NAMES)
            assert code == 401 and "agent key" in body["detail"], body
            assert other.side_paths()["poll"][0] == 401
    assert Snapshot.objects.filter(endpoint__hostname="mac-studio").count() == 2
    assert not AuditEvent.objects.filter(action="ingest.refused").exists()

"""Issue 13, accounts: stolen credentials used on a server the account never touched, and the look-alikes.

Personal accounts fold into one class for the path/parent/user features; the per-host
account sets see what that fold hides.
"""
import zlib

import pytest

from tests.axon.stories import Proc, Story, flags, linux_base

HISTORY = 72
SERVERS = ("web-01", "web-02", "web-03", "web-04")


def _now_and_then(host: str):
    # The admin's sessions: a few hours a day, at an hour that depends on the host.
    phase = zlib.crc32(host.encode()) % 7
    return lambda i, hod: i % 7 == phase


def _session(user: str, runs) -> list[Proc]:
    return [Proc("sshd-session", "/usr/sbin/sshd", user=user, parent="sshd", runs=runs),
            Proc("bash", "/usr/bin/bash", user=user, parent="sshd-session", runs=runs)]


def _story() -> Story:
    hosts = {
        # carol's workstation: her account is known there, and only there
        "ws-carol": ("linux", linux_base() + [Proc("bash", "/usr/bin/bash", user="carol", parent="systemd"),
                                              Proc("firefox", "/usr/lib/firefox/firefox", user="carol")]),
    }
    for host in SERVERS:
        programs = linux_base() + [Proc("nginx", "/usr/sbin/nginx", user="www-data", count=3)]
        if host != "web-04":  # the admin has never had reason to log into web-04
            programs += _session("ops", _now_and_then(host))
        hosts[host] = ("linux", programs)
    return Story(hosts=hosts)


@pytest.fixture
def trained(db):
    return _story().trained(HISTORY)


@pytest.mark.clock
@pytest.mark.django_db
def test_a_personal_account_never_seen_on_a_server_is_news(trained):
    results = trained.ingest(HISTORY, HISTORY + 2, extra={"web-02": _session("carol", lambda i, hod: True)})
    flagged = flags(results)
    assert {(h, n) for h, n, _ in flagged} == {("web-02", "sshd-session"), ("web-02", "bash")}, flagged
    assert all("account carol never seen on this host" in reasons for _, _, reasons in flagged)


@pytest.mark.clock
@pytest.mark.django_db
def test_the_admin_on_one_more_server_and_a_new_hosts_own_user_are_not_news(trained):
    newcomer = Story(hosts={"ws-erin": ("linux", linux_base() + [
        Proc("bash", "/usr/bin/bash", user="erin", parent="systemd")])}, start=trained.start)
    results = trained.ingest(HISTORY, HISTORY + 2, extra={"web-04": _session("ops", lambda i, hod: True)})
    results += newcomer.ingest(HISTORY, HISTORY + 2)
    # root everywhere, www-data on a server, ops on a fourth server, erin on her own new host
    assert flags(results) == []

"""`manage.py collect --events`: every exec on Linux, from the kernel's process connector.

The parsing is tested on bytes built with struct; the listener and the command against this
machine's kernel (skipped, saying why, where the connector cannot be used).
"""
import errno
import os
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from telemetry.models import AgentKey, ProcessRecord, Snapshot
from telemetry.proc_connector import (
    CN_IDX_PROC,
    CN_MSG,
    CN_VAL_PROC,
    NLMSG_DONE,
    NLMSGHDR,
    PROC_EVENT,
    Ack,
    ConnectorUnavailable,
    Exec,
    ExecListener,
    Pending,
    ProcFiles,
    event_build,
    listen_message,
    messages_parse,
    proc_read,
    process_name,
    refusal,
    started_at,
)
from tests.conftest import REPO

PROC_EVENT_FORK, PROC_EVENT_EXEC = 0x1, 0x2


def proc_message(what: int, data: bytes, *, idx: int = CN_IDX_PROC, ack: int = 0, timestamp_ns: int = 0) -> bytes:
    body = PROC_EVENT.pack(what, 3, timestamp_ns) + data
    cn = CN_MSG.pack(idx, CN_VAL_PROC, 77, ack, len(body), 0) + body
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def exec_message(pid: int, tgid: int, timestamp_ns: int) -> bytes:
    return proc_message(PROC_EVENT_EXEC, struct.pack("=ii", pid, tgid), timestamp_ns=timestamp_ns)


def test_an_exec_message_gives_the_process_and_its_kernel_time():
    (found,) = messages_parse(exec_message(4242, 4242, 123_456_789))
    assert found == Exec(pid=4242, monotonic_ns=123_456_789)


def test_a_thread_that_execs_is_reported_as_its_process():
    assert messages_parse(exec_message(4243, 4242, 1)) == [Exec(pid=4242, monotonic_ns=1)]


def test_forks_exits_and_other_connectors_are_skipped_and_several_messages_share_a_datagram():
    datagram = b"".join([
        proc_message(PROC_EVENT_FORK, struct.pack("=iiii", 1, 1, 50, 50)),
        exec_message(50, 50, 10),
        proc_message(PROC_EVENT_EXEC, struct.pack("=ii", 60, 60), idx=CN_IDX_PROC + 1),
        exec_message(51, 51, 11),
    ])
    assert messages_parse(datagram) == [Exec(50, 10), Exec(51, 11)]


def test_a_message_cut_short_is_ignored_not_misread():
    whole = exec_message(50, 50, 10) + exec_message(51, 51, 11)
    assert messages_parse(whole[:-5]) == [Exec(50, 10)]
    assert messages_parse(b"\x00" * 7) == []


def test_the_kernels_answer_carries_our_cookie_plus_one_and_its_errno():
    (answer,) = messages_parse(proc_message(0, struct.pack("=I", errno.EPERM), ack=901))
    assert answer == Ack(seq=77, ack=901, err=errno.EPERM)
    assert "CAP_NET_ADMIN" in refusal(answer.err) and "root" in refusal(answer.err)


def test_the_subscription_message_is_what_the_kernel_expects():
    message = listen_message(port=1234, cookie=900)
    length, kind, _flags, _seq, port = NLMSGHDR.unpack_from(message)
    assert (length, kind, port) == (len(message), NLMSG_DONE, 1234)
    idx, val, _seq, ack, data_length, _ = CN_MSG.unpack_from(message, NLMSGHDR.size)
    assert (idx, val, ack, data_length) == (CN_IDX_PROC, CN_VAL_PROC, 900, 4)
    assert struct.unpack_from("=I", message, NLMSGHDR.size + CN_MSG.size) == (1,)  # PROC_CN_MCAST_LISTEN


def test_the_kernel_time_becomes_this_machines_clock():
    started = started_at(1_000_000_000, wall_now=1_800_000_010.5, monotonic_now_ns=3_500_000_000)
    assert started == datetime.fromtimestamp(1_800_000_008.0, UTC)


STATUS = "Name:\tpython3\nState:\tS (sleeping)\nPPid:\t812\nUid:\t1000\t1000\t1000\t1000\n"


def test_an_event_follows_psutils_rules_so_it_shares_the_snapshots_alert_key():
    files = ProcFiles(comm="gnome-keyring-d", status=STATUS, exe="/usr/bin/gnome-keyring-daemon (deleted)",
                      cmdline=b"/usr/bin/gnome-keyring-daemon\x00--start\x00")
    parent = ProcFiles(comm="bash", status=STATUS, exe="/usr/bin/bash", cmdline=b"-bash\x00")
    event = event_build(hostname="h", started=datetime(2026, 11, 11, 14, 0, 0, 250_000, tzinfo=UTC), pid=900,
                        files=files, parent=parent, username="kim")
    assert event == {
        "hostname": "h", "timestamp": "2026-11-11T14:00:00.250000Z", "pid": 900, "ppid": 812,
        "name": "gnome-keyring-daemon", "exe": "/usr/bin/gnome-keyring-daemon",
        "cmdline": "/usr/bin/gnome-keyring-daemon --start",
        "username": "kim", "parent_name": "bash", "parent_exe": "/usr/bin/bash",
    }


def test_a_process_that_rewrote_its_title_is_split_on_spaces_as_psutil_does():
    files = ProcFiles(comm="postgres", status=STATUS, cmdline=b"postgres: checkpointer   \x00")
    assert event_build(hostname="h", started=datetime(2026, 1, 1, tzinfo=UTC), pid=1, files=files, parent=None,
                       username="")["cmdline"].startswith("postgres: checkpointer")
    assert process_name("a-very-long-nam", ["/opt/other"]) == "a-very-long-nam"


def test_proc_read_of_a_zombie_gives_its_name_and_a_reaped_one_is_gone(tmp_path):
    zombie = tmp_path / "31"
    zombie.mkdir()
    (zombie / "comm").write_text("whoami\n")
    (zombie / "status").write_text(STATUS)
    (zombie / "cmdline").write_bytes(b"")
    files = proc_read(31, tmp_path)
    assert files is not None and (files.comm, files.exe) == ("whoami", "")
    event = event_build(hostname="h", started=datetime(2026, 1, 1, tzinfo=UTC), pid=31, files=files, parent=None,
                        username="kim")
    assert (event["name"], event["exe"], event["ppid"]) == ("whoami", "", 812)
    assert proc_read(32, tmp_path) is None


def test_an_exec_storm_is_dropped_with_a_count_never_held_without_bound():
    pending = Pending(capacity=100, max_bytes=10**9)
    event = {"cmdline": "x", "exe": "/bin/x", "parent_exe": ""}
    accepted = sum(pending.offer(dict(event)) for _ in range(10_000))
    assert (accepted, len(pending), pending.dropped) == (100, 100, 9_900)
    assert len(pending.take(1000)) == 100 and pending.offer(dict(event))  # sending makes room again
    by_size = Pending(capacity=10**6, max_bytes=10 * 1024)
    for _ in range(100):
        by_size.offer({"cmdline": "a" * 4096, "exe": "", "parent_exe": ""})
    assert (len(by_size), by_size.dropped) == (2, 98)


@pytest.fixture
def listener(request):
    started = ExecListener(hostname="this-machine", pending=getattr(request, "param", None))
    try:
        started.start()
    except ConnectorUnavailable as exc:
        pytest.skip(f"the process connector cannot be used here: {exc}")
    yield started
    started.stop()


def test_the_listener_finds_twenty_starts_of_bin_true(listener):
    # Unreaped until found: a zombie keeps its /proc entry, so none of them is "gone" by chance.
    children = [subprocess.Popen(["/bin/true"]) for _ in range(20)]
    pids = {child.pid for child in children}
    found: dict[int, dict] = {}
    deadline = time.monotonic() + 60
    while set(found) != pids and time.monotonic() < deadline:
        listener.pending.wait(10**6, timeout=0.2)
        found.update({e["pid"]: e for e in listener.pending.take(10**6) if e["pid"] in pids})
    for child in children:
        child.wait()
    assert set(found) == pids
    assert {(e["name"], e["ppid"], e["hostname"]) for e in found.values()} == {("true", os.getpid(), "this-machine")}
    assert all(e["exe"] in ("", os.path.realpath("/bin/true")) for e in found.values())


@pytest.mark.parametrize("listener", [Pending(capacity=5)], indirect=True)
def test_the_listener_holds_no_more_than_its_capacity_while_nothing_is_sent(listener):
    children = [subprocess.Popen(["/bin/true"]) for _ in range(20)]
    deadline = time.monotonic() + 60
    while listener.pending.dropped < 15 and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        child.wait()
    assert len(listener.pending) == 5 and listener.pending.dropped >= 15


def collector(subprocess_env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "collect", *args], cwd=REPO, text=True,
        env={**subprocess_env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", ["server", "direct"])
def test_collect_events_stores_the_starts_between_snapshots(subprocess_env, live_server, door):
    hostname = f"exec-watch-{door}"
    args = ["--hostname", hostname, "--every", "0.5", "--events"]
    if door == "server":
        _, key = AgentKey.objects.create_key(name="collector")
        args += ["--server", live_server.url, "--key", key]
    process = collector(subprocess_env, *args)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if "Listening for process starts" not in first:
            process.kill()
            pytest.skip(f"the process connector cannot be used here: {process.communicate()[1].strip()}")
        children = [subprocess.Popen(["/bin/true"]) for _ in range(5)]
        pids = {child.pid for child in children}
        stored = ProcessRecord.objects.filter(snapshot__source=Snapshot.Source.EVENT, endpoint__hostname=hostname,
                                              pid__in=pids)
        deadline = time.monotonic() + 60
        while stored.count() < len(pids) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        for child in children:
            child.wait()
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert {(r.pid, r.name, r.ppid) for r in stored} == {(pid, "true", os.getpid()) for pid in pids}, err
    assert Snapshot.objects.filter(endpoint__hostname=hostname, source=Snapshot.Source.SNAPSHOT).exists()
    assert "process starts," in out


# The kernel here may let anyone subscribe (Linux 6.6+), so refusal is simulated where the kernel
# would say it before 6.6: at bind, with EPERM.
WITHOUT_PRIVILEGE = """
import runpy, socket, sys
def bind(self, address, _bind=socket.socket.bind):
    if self.family == getattr(socket, "AF_NETLINK", None):
        raise PermissionError(1, "Operation not permitted")
    return _bind(self, address)
socket.socket.bind = bind
sys.argv = ["manage.py", *sys.argv[1:]]
runpy.run_path("manage.py", run_name="__main__")
"""


@pytest.mark.django_db(transaction=True)
def test_without_the_privilege_it_says_so_once_and_keeps_sending_snapshots(subprocess_env):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PRIVILEGE, "collect", "--hostname", "no-privilege", "--every", "0.2",
         "--count", "3", "--events"], cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Process starts are not reported") == 1
    assert "CAP_NET_ADMIN" in result.stderr and "Snapshots are sent all the same" in result.stderr
    assert Snapshot.objects.filter(endpoint__hostname="no-privilege").count() == 3


@pytest.mark.django_db(transaction=True)
def test_events_without_every_says_they_come_between_snapshots(manage):
    result = manage("collect", "--events")
    assert result.returncode != 0
    assert "--events needs --every" in result.stderr

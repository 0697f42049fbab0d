"""The feature contract: pure numpy, no Django, no database."""
from __future__ import annotations

import numpy as np
import pytest

from axon.detector.features import (
    EXE,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FLEET,
    HOST,
    PARENT,
    PERSONAL,
    USER,
    Baseline,
    ComboTable,
    ObservationBatch,
    WindowData,
    approved_mask,
)

SNAPSHOTS = 96  # four days, hourly
# (name, exe, parent, user) run on every host at every snapshot, cpu 1 %, 20 MiB
COMMON = [
    ("systemd", "/usr/lib/systemd/systemd", "", "root"),
    ("sshd", "/usr/sbin/sshd", "systemd", "root"),
    ("cron", "/usr/sbin/cron", "systemd", "root"),
    ("kworker", "", "", "root"),
]


def _every_hour(host, name, exe, parent, user, per_hour=SNAPSHOTS // 24, cpu=1.0, mem=20.0):
    return [(host, name, exe, parent, user, hour, per_hour, cpu * per_hour, cpu * cpu * per_hour,
             mem * per_hour, mem * mem * per_hour) for hour in range(24)]


def _window(hosts=("a", "b", "c", "d"), extra=()) -> WindowData:
    rows = []
    for h in hosts:
        for name, exe, parent, user in COMMON + [("bash", "/usr/bin/bash", "sshd", f"user-{h}")]:
            rows.extend(_every_hour(h, name, exe, parent, user))
    rows.extend(extra)
    return WindowData(ComboTable.from_rows(rows), {h: SNAPSHOTS for h in hosts}, {h: "linux" for h in hosts})


def _batch(rows) -> ObservationBatch:
    """rows: (host, name, exe, parent, user)"""
    n = len(rows)
    cols = list(zip(*rows))
    return ObservationBatch(host=list(cols[0]), os=["linux"] * n, name=list(cols[1]), exe=list(cols[2]),
                            parent=list(cols[3]), user=list(cols[4]), hour=np.full(n, 10),
                            cpu=np.ones(n), mem=np.full(n, 20.0))


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline.from_window(_window())


def test_contract_names_version_and_matrix_shape(baseline):
    assert isinstance(FEATURE_VERSION, int)
    assert isinstance(FEATURE_NAMES, tuple) and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    f = baseline.features(_batch([("a", "sshd", "/usr/sbin/sshd", "systemd", "root")] * 3))
    assert f.X.shape == (3, len(FEATURE_NAMES))
    assert np.all(f.X >= -1.0) and np.all(f.X <= 1.0)


def test_empty_batch_gives_an_empty_matrix(baseline):
    f = baseline.features(ObservationBatch([], [], [], [], [], [], np.zeros(0), np.zeros(0), np.zeros(0)))
    assert f.X.shape == (0, len(FEATURE_NAMES))


def test_ordinary_observation_is_far_from_the_novelty_end(baseline):
    f = baseline.features(_batch([("a", "sshd", "/usr/sbin/sshd", "systemd", "root")]))
    assert np.all(f.X[0, [HOST, FLEET, EXE, PARENT, USER]] < 0.5)


def test_unknown_name_lands_at_the_novelty_end(baseline):
    f = baseline.features(_batch([("a", "xmrig", "/var/tmp/xmrig", "sshd", "root")]))
    assert f.X[0, HOST] == 1.0 and f.X[0, FLEET] == 1.0
    assert f.novel(HOST)[0]


def test_known_name_from_a_new_path_is_novel_on_the_path_only(baseline):
    f = baseline.features(_batch([("a", "sshd", "/tmp/sshd", "systemd", "root")]))
    assert f.X[0, EXE] == 1.0
    assert f.X[0, HOST] < 1.0 and f.X[0, PARENT] < 1.0 and f.X[0, USER] < 1.0


def test_known_name_under_a_new_parent_is_novel_on_the_parent(baseline):
    f = baseline.features(_batch([("a", "cron", "/usr/sbin/cron", "nginx", "root")]))
    assert f.X[0, PARENT] == 1.0 and f.X[0, EXE] < 1.0


def test_kernel_thread_with_an_executable_is_novel_on_the_path(baseline):
    f = baseline.features(_batch([("a", "kworker", "/tmp/.k/kworker", "", "root")]))
    assert f.X[0, EXE] == 1.0


def test_missing_path_and_parent_are_neutral_not_novel(baseline):
    f = baseline.features(_batch([("a", "sshd", "", "", "")]))
    assert f.X[0, EXE] == 0.0 and f.X[0, PARENT] == 0.0 and f.X[0, USER] == 0.0


def test_rarity_grows_as_the_name_gets_rarer_but_stays_below_one_when_seen():
    extra = [("a", "certbot", "/usr/bin/certbot", "systemd", "root", 3, 4, 4.0, 4.0, 80.0, 1600.0),
             ("a", "sudo", "/usr/bin/sudo", "bash", "root", 3, 1, 1.0, 1.0, 5.0, 25.0)]
    b = Baseline.from_window(_window(extra=extra))
    f = b.features(_batch([("a", "sshd", "/usr/sbin/sshd", "systemd", "root"),
                           ("a", "certbot", "/usr/bin/certbot", "systemd", "root"),
                           ("a", "sudo", "/usr/bin/sudo", "bash", "root")]))
    assert f.X[0, HOST] < f.X[1, HOST] < f.X[2, HOST] < 1.0


def test_user_seen_on_one_host_is_folded_to_personal(baseline):
    assert baseline.fold_user("user-a") == PERSONAL
    assert baseline.fold_user("someone-new") == PERSONAL
    # so another host's personal user running bash is as usual as the host's own
    f = baseline.features(_batch([("a", "bash", "/usr/bin/bash", "sshd", "user-b"),
                                  ("a", "bash", "/usr/bin/bash", "sshd", "newcomer")]))
    assert np.all(f.X[:, USER] < 0.5)


def test_shared_accounts_stay_themselves(baseline):
    assert baseline.fold_user("root") == "root"
    f = baseline.features(_batch([("a", "sshd", "/usr/sbin/sshd", "systemd", "someone")]))
    assert f.X[0, USER] == 1.0  # a personal account never ran sshd


def test_user_on_two_hosts_among_others_running_the_same_program_is_personal():
    # alice runs the desktop on 2 of 4 hosts, others run it as bob and carol: alice is a person
    extra = []
    for h, u in (("a", "alice"), ("b", "alice"), ("c", "bob"), ("d", "carol")):
        extra.extend(_every_hour(h, "explorer", "/usr/bin/explorer", "", u))
    b = Baseline.from_window(_window(extra=extra))
    assert b.fold_user("alice") == PERSONAL
    assert b.fold_user("root") == "root"


def test_new_host_falls_back_to_the_fleet_view(baseline):
    rows = [("new", name, exe, parent, user) for name, exe, parent, user in COMMON]
    rows.append(("new", "bash", "/usr/bin/bash", "sshd", "newcomer"))
    f = baseline.features(_batch(rows))
    assert np.all(f.X[:, [HOST, FLEET, EXE, PARENT, USER]] < 0.5)
    # but what no host of its OS runs is still novel there
    g = baseline.features(_batch([("new", "xmrig", "/tmp/xmrig", "", "root")]))
    assert g.X[0, HOST] == 1.0


def test_host_with_a_few_snapshots_still_borrows_the_fleet_view():
    extra = [("young", "systemd", "/usr/lib/systemd/systemd", "", "root", h, 1, 1.0, 1.0, 20.0, 400.0)
             for h in (8, 9, 10)]
    w = _window(extra=extra)
    w.host_snapshots["young"] = 3
    w.host_os["young"] = "linux"
    b = Baseline.from_window(w)
    f = b.features(_batch([("young", "cron", "/usr/sbin/cron", "systemd", "root")]))
    assert f.X[0, HOST] < 0.5
    assert b.features(_batch([("a", "cron", "/usr/sbin/cron", "systemd", "root")])).X[0, HOST] < 0.5


def test_established_host_does_not_borrow_the_fleet_view():
    extra = [row for h in ("b", "c", "d") for row in _every_hour(h, "nginx", "/usr/sbin/nginx", "systemd", "root")]
    b = Baseline.from_window(_window(extra=extra))
    f = b.features(_batch([("a", "nginx", "/usr/sbin/nginx", "systemd", "root")]))
    assert f.X[0, HOST] == 1.0  # never on host a
    assert f.X[0, FLEET] == pytest.approx(0.25)  # but on 3 of 4 linux hosts


def test_cpu_z_is_clipped_and_relative_to_the_name(baseline):
    batch = _batch([("a", "sshd", "/usr/sbin/sshd", "systemd", "root")] * 2)
    batch.cpu = np.array([1.0, 500.0])
    f = baseline.features(batch)
    assert f.X[0, FEATURE_NAMES.index("cpu_z")] == pytest.approx(0.0)
    assert f.X[1, FEATURE_NAMES.index("cpu_z")] == 1.0


def test_an_approval_covers_the_program_under_any_parent_and_its_install_folder_only():
    approved = frozenset({("a", "obsidian.exe", r"c:\users\<user>\obsidian\obsidian.exe", "explorer.exe", "")})
    batch = _batch([
        ("a", "obsidian.exe", r"c:\users\<user>\obsidian\obsidian.exe", "explorer.exe", "u"),  # the key
        ("a", "obsidian.exe", r"c:\users\public\obsidian.exe", "explorer.exe", "u"),  # other path
        ("a", "obsidian.exe", r"c:\users\<user>\obsidian\obsidian.exe", "onedrive.exe", "u"),  # other parent
        ("b", "obsidian.exe", r"c:\users\<user>\obsidian\obsidian.exe", "explorer.exe", "u"),  # other host
        ("a", "update.exe", r"c:\users\<user>\obsidian\update.exe", "obsidian.exe", "u"),  # its own updater
        ("a", "update.exe", r"c:\users\<user>\other\update.exe", "obsidian.exe", "u"),  # someone else's
        ("a", "obsidian.exe", r"c:\users\<user>\obsidian\obsidian.exe", "winword.exe", "u"),  # started by Word
    ])
    assert approved_mask(batch, approved).tolist() == [True, False, True, False, True, False, False]
    assert approved_mask(batch, frozenset()).tolist() == [False] * 7


def test_an_interpreter_is_approved_with_its_script():
    new = frozenset({("a", "python3", "/usr/bin/python3", "cron", "/opt/ci/report.py")})
    old = frozenset({("a", "python3", "/usr/bin/python3", "cron")})  # approved before scripts counted
    batch = _batch([("a", "python3", "/usr/bin/python3", "cron", "u")] * 2 + [("a", "python3", "/usr/bin/python3", "sshd", "u")])
    batch.script = ["/opt/ci/report.py", "-c import socket", "/opt/ci/report.py"]
    assert approved_mask(batch, new).tolist() == [True, False, True]
    assert approved_mask(batch, old).tolist() == [True, True, False]
    # A system folder holds no install folder: approving one program there approves no other.
    assert approved_mask(_batch([("a", "evil", "/usr/bin/evil", "cron", "u")]),
                         frozenset({("a", "tool", "/usr/bin/tool", "cron", "")})).tolist() == [False]


def test_combo_table_from_rows_keeps_columns_and_rejects_bad_rows():
    t = ComboTable.from_rows([("h", "n", None, "", "root", 3, 2, 1.0, 0.5, 10.0, 50.0)])
    assert t.exe == [""] and t.count.tolist() == [2] and t.records == 2


def test_combo_table_keeps_one_row_per_program_with_its_hours():
    t = ComboTable.from_rows([("h", "n", "/x", "", "root", 3, 2, 1.0, 0.5, 10.0, 50.0),
                              ("h", "n", "/x", "", "root", 4, 6, 9.0, 13.5, 30.0, 150.0),
                              ("h", "m", "/y", "", "root", 4, 1, 0.0, 0.0, 1.0, 1.0)])
    assert len(t) == 2 and t.count.tolist() == [8, 1] and t.records == 9
    assert t.hour_count[0, 3:5].tolist() == [2, 6] and t.hour_count[0].sum() == 8
    assert t.hour_cpu[0, 3:5].tolist() == [1.0, 9.0] and t.cpu_sq[0] == 14.0 and t.mem_sum[0] == 40.0
    assert [r[5:8] for r in t.hour_rows(0)] == [(3, 2, 1.0), (4, 6, 9.0)]
    with pytest.raises(ValueError):
        ComboTable.from_rows([("h", "n", "", "", "root", 3, 2)])

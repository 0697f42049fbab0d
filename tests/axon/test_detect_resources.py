"""Issue 13, resources: a miner under a busy name on a busy build host, and the benign look-alikes.

The norm is the host's own (and its hour's), not the OS pool; staying far above it over
consecutive snapshots is news, one busy snapshot is not; an approval never waives it.
"""
import pytest

from tests import fleet
from tests.axon.stories import Proc, Story, flags, linux_base

HISTORY = 72  # hours: three days, hourly


def _gradle(rng, i, hod):
    # The build host's JVM: mostly idle, a build now and then (never two hours running).
    return round(rng.uniform(300, 380), 1) if i % 5 == 0 else round(rng.uniform(2, 20), 1)


def _backup(rng, i, hod):
    return round(rng.uniform(80, 95), 1) if hod in (2, 3, 4) else round(rng.uniform(0, 2), 1)


def _story() -> Story:
    java_build = Proc("java", "/usr/lib/jvm/java-17/bin/java", user="builder", cpu=_gradle)
    java_app = Proc("java", "/usr/lib/jvm/java-17/bin/java", user="app", cpu=lambda rng, i, hod: round(rng.uniform(5, 15), 1))
    return Story(hosts={
        "build-01": ("linux", linux_base() + [java_build]),
        "build-02": ("linux", linux_base() + [java_build]),
        "web-01": ("linux", linux_base() + [java_app, Proc("backupd", "/usr/local/bin/backupd", cpu=_backup)]),
        "web-02": ("linux", linux_base() + [java_app]),
    })


@pytest.fixture
def trained(db):
    return _story().trained(HISTORY)


def _miner(first_hour: int, hours: int) -> Proc:
    # Same name, path, user and parent as the build host's JVM: only its CPU gives it away.
    return Proc("java", "/usr/lib/jvm/java-17/bin/java", user="builder",
                runs=lambda i, hod: first_hour <= i < first_hour + hours, cpu=lambda rng, i, hod: 390.0)


@pytest.mark.clock
@pytest.mark.django_db
def test_a_miner_under_a_busy_name_is_flagged_once_it_stays_far_above_the_hosts_norm(trained):
    start = HISTORY + 1  # an hour when the real JVM is idle
    results = [trained.ingest(h, h + 1, extra={"build-01": [_miner(start, 6)]}, only={"build-01"})
               for h in range(start, start + 6)]
    per_hour = [flags(r) for r in results]
    # One and two busy snapshots are what a build does; from the third the streak is news.
    assert per_hour[0] == [] and per_hour[1] == [], per_hour
    for hours_running, hour_flags in enumerate(per_hour[2:], start=3):
        assert [(h, n) for h, n, _ in hour_flags] == [("build-01", "java")], hour_flags
        (reason,) = [r for r in hour_flags[0][2] if r.startswith("CPU")]
        assert reason.startswith(f"CPU 390% for {hours_running} snapshots vs usual ") and reason.endswith(" on this host")


@pytest.mark.clock
@pytest.mark.django_db
def test_a_build_spike_and_a_backup_at_its_usual_hour_are_not_flagged(trained):
    # The next 26 hours hold the usual single-snapshot builds and one night of the backup
    # (busy for three snapshots running, at its usual hours).
    results = trained.ingest(HISTORY, HISTORY + 26)
    assert flags(results) == []


@pytest.mark.django_db
def test_an_approval_never_waives_a_resource_anomaly(trained, admin_user):
    tool = Proc("acme-sync", "/opt/acme/bin/acme-sync", runs=lambda i, hod: i >= HISTORY)
    first = trained.ingest(HISTORY, HISTORY + 3, extra={"web-02": [tool]}, only={"web-02"})
    assert {(h, n) for h, n, _ in flags(first)} == {("web-02", "acme-sync")}
    run = fleet.train(user=admin_user, reason="acme sync rolled out")
    assert run.status == "succeeded", run.message
    quiet = trained.ingest(HISTORY + 3, HISTORY + 4, extra={"web-02": [tool]}, only={"web-02"})
    assert flags(quiet) == []
    burning = Proc("acme-sync", "/opt/acme/bin/acme-sync", cpu=lambda rng, i, hod: 400.0)
    hot = trained.ingest(HISTORY + 4, HISTORY + 5, extra={"web-02": [burning]}, only={"web-02"})
    ((host, name, reasons),) = flags(hot)
    assert (host, name) == ("web-02", "acme-sync")
    assert len(reasons) == 1 and reasons[0].startswith("CPU 400% vs usual "), reasons

"""The daily rollups training reads (telemetry/rollups.py): kept at ingestion, the same as the raw records say."""
from collections import defaultdict
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from axon.selectors import exe_key
from axon.services.window import window_aggregate
from telemetry.models import HostDay, ProcessRecord, ProcessRollup
from telemetry.retention import telemetry_prune
from tests import fleet

pytestmark = pytest.mark.django_db(transaction=True)


def _raw_window() -> tuple[dict, dict]:
    """What the window holds, grouped from the raw records: per (host, name, exe, parent, user, hour) the count
    and CPU sum, and per (host, name) the sums of squares and memory.

    The window learns what nobody flagged, and what was flagged and then approved; the rule is written
    out here, not borrowed from the code under test."""
    by_hour, by_name = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in ProcessRecord.objects.select_related("endpoint"):
        if r.flagged is True and r.status != "approved":
            continue
        cpu, mem = r.cpu_percent or 0.0, (r.memory_rss or 0) / 1048576
        key = (r.endpoint.hostname, r.name_norm, exe_key(r.exe_norm, r.endpoint.os or "linux"),
               r.parent_name, r.username, r.hour)
        by_hour[key][0] += 1
        by_hour[key][1] += cpu
        acc = by_name[(r.endpoint.hostname, r.name_norm)]
        acc[0] += cpu * cpu
        acc[1] += mem
        acc[2] += mem * mem
    return dict(by_hour), dict(by_name)


def _window() -> tuple[dict, dict]:
    now = timezone.now()
    window, _ = window_aggregate(since=now - timedelta(days=30), until=now)
    c = window.combos
    by_hour, by_name = {}, defaultdict(lambda: [0.0, 0.0, 0.0])
    for i in range(len(c)):
        for hour in range(24):
            if c.hour_count[i, hour]:
                key = (c.host[i], c.name[i], c.exe[i], c.parent[i], c.user[i], hour)
                assert key not in by_hour, f"{key} twice in the window"
                by_hour[key] = [int(c.hour_count[i, hour]), float(c.hour_cpu[i, hour])]
        acc = by_name[(c.host[i], c.name[i])]
        acc[0] += c.cpu_sq[i]
        acc[1] += c.mem_sum[i]
        acc[2] += c.mem_sq[i]
    return by_hour, dict(by_name)


def _assert_same(raw: tuple[dict, dict], window: tuple[dict, dict]) -> None:
    assert window[0].keys() == raw[0].keys()
    for key, (n, cpu) in raw[0].items():
        assert window[0][key][0] == n, key
        assert window[0][key][1] == pytest.approx(cpu, rel=1e-9, abs=1e-6), key
    for key, sums in raw[1].items():
        assert window[1][key] == pytest.approx(sums, rel=1e-9, abs=1e-6), key


def test_the_window_from_rollups_is_what_the_trainable_raw_records_say():
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)  # a new application and an intruder: flagged, so left out of the next window
    flagged = ProcessRecord.objects.filter(flagged=True)
    assert flagged.exists()
    # One flagged program approved: its records are ordinary again and come back into the window.
    approved = flagged.first()
    flagged.filter(name_norm=approved.name_norm).update(status=ProcessRecord.Status.APPROVED)
    assert ProcessRollup.objects.count() < ProcessRecord.objects.count() / 10
    _assert_same(_raw_window(), _window())


def test_rebuilding_makes_the_rollups_ingestion_kept():
    fleet.history(days=2)
    fields = [f.attname for f in ProcessRollup._meta.concrete_fields if f.attname != "id"]
    kept = sorted(ProcessRollup.objects.values_list(*fields))
    days = sorted(HostDay.objects.values_list("endpoint_id", "day", "snapshots", "last_at"))
    ProcessRollup.objects.all().delete()
    HostDay.objects.all().delete()
    call_command("rollups_rebuild")
    assert sorted(HostDay.objects.values_list("endpoint_id", "day", "snapshots", "last_at")) == days
    rebuilt = sorted(ProcessRollup.objects.values_list(*fields))
    assert len(rebuilt) == len(kept)
    for a, b in zip(kept, rebuilt):
        assert a[:8] == b[:8]  # host, day, combo and its five strings
        assert b[8:] == pytest.approx(a[8:])  # the sums, added in another order


def test_rebuilding_an_unknown_host_is_refused_with_its_name():
    with pytest.raises(CommandError, match="No such host: nowhere-01"):
        call_command("rollups_rebuild", "--host", "nowhere-01")


def test_retention_forgets_the_rollup_days_before_the_cut():
    fleet.history(days=3)
    days = sorted(set(ProcessRollup.objects.values_list("day", flat=True)))
    assert len(days) >= 3
    assert sorted(set(HostDay.objects.values_list("day", flat=True))) == days
    cut = timezone.now() - timedelta(days=1)
    telemetry_prune(older_than=cut)
    left = sorted(set(ProcessRollup.objects.values_list("day", flat=True)))
    assert left == [d for d in days if d >= cut.date()]
    assert sorted(set(HostDay.objects.values_list("day", flat=True))) == left

"""Stories on the demo fleet for the detection tests (classes 1, 5, 7, 8): its history with extra processes, then snapshots.

Everything comes from a seed and the hour's position in the story, never from the clock.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.utils import timezone

from telemetry.demo import HOSTS, demo_payloads
from tests import fleet

# extra(hostname, hour_index, rng) -> process rows to add to that host's snapshot; "parent" names the parent.
Extra = Callable[[str, int, random.Random], list[dict]]


def _attach(payload: dict, rows: list[dict], rng: random.Random) -> dict:
    procs = list(payload["processes"])
    by_name = {p["name"]: p["pid"] for p in procs}
    used = {p["pid"] for p in procs}
    for row in rows:
        row = dict(row)
        pid = row.pop("pid", None) or rng.randrange(60000, 90000)
        while pid in used:
            pid += 1
        used.add(pid)
        parent = row.pop("parent", None)
        row.setdefault("ppid", by_name.get(parent, 1) if parent else 1)
        procs.append({"pid": pid, "cpu_percent": 1.0, "memory_rss": 50 * 1024 * 1024, **row})
        by_name.setdefault(row["name"], pid)
    return {**payload, "processes": procs}


def legacy(payload: dict) -> dict:
    """The same snapshot as a Voltaxe Sentinel sends it: process names only, no OS."""
    return {"hostname": payload["hostname"], "timestamp": payload["timestamp"],
            "processes": [p["name"] for p in payload["processes"]]}


def history(extra: Extra, *, days: int = 2, recent_hours: int = 2, seed: int = 11, legacy_hosts: tuple[str, ...] = ()):
    """Ordinary demo history with `extra` processes added; returns the split time (as tests.fleet.history).

    Hosts in `legacy_hosts` report names only, as a Voltaxe Sentinel does (their first snapshot
    keeps its OS, so the host's OS is known, as after a Sentinel's host report)."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    split = now - timedelta(hours=recent_hours)
    rng = random.Random(seed)

    def payloads() -> Iterator[dict]:
        hour_of = {}
        for payload in demo_payloads(start=split - timedelta(days=days), end=split, novelties=False):
            hour_of.setdefault(payload["hostname"], -1)
            hour_of[payload["hostname"]] += 1
            payload = _attach(payload, extra(payload["hostname"], hour_of[payload["hostname"]], rng), rng)
            yield legacy(payload) if payload["hostname"] in legacy_hosts and hour_of[payload["hostname"]] else payload

    fleet.ingest(payloads())
    return split


def snapshot(host: str, rows: list[dict], *, seconds_ago: int = 5, seed: int = 3, legacy: bool = False,
             without: tuple[str, ...] = ()) -> dict:
    """One snapshot of `host`: its always-running programs (but `without`) plus `rows` (each may name its "parent")."""
    rng = random.Random(seed)
    os_name, procs = next((o, p) for h, o, p in HOSTS if h == host)
    base, pids = [], {}
    for i, (name, exe, user, parent, count, _) in enumerate(p for p in procs if p[5] >= 0.5):
        if name in without:
            continue
        for j in range(count):
            pid = 1000 + 50 * i + j
            pids.setdefault(name, pid)
            base.append({"name": name, "pid": pid, "ppid": pids.get(parent, 1), "exe": exe, "username": user,
                         "cpu_percent": 1.0, "memory_rss": 60 * 1024 * 1024})
    payload = _attach({"hostname": host, "os": os_name, "processes": base}, rows, rng)
    payload["timestamp"] = (timezone.now() - timedelta(seconds=seconds_ago)).isoformat()
    return globals()["legacy"](payload) if legacy else payload


def flagged(results: list[dict]) -> dict[str, list[str]]:
    """{name: reasons} of what the answers flagged."""
    return {a["name"]: a["reasons"] for r in results for a in r.get("anomalies", [])}


def pid_of(payload: dict, name: str) -> int:
    return next(p["pid"] for p in payload["processes"] if p["name"] == name)

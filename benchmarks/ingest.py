#!/usr/bin/env python3
"""End-to-end ingestion benchmark: a real gunicorn server, a real database, a keep-alive HTTP client.

    .venv/bin/python benchmarks/ingest.py --database postgres://127.0.0.1:5432/voltaxe_bench
    .venv/bin/python benchmarks/ingest.py --database sqlite                 # a temporary SQLite file
    .venv/bin/python benchmarks/ingest.py --database sqlite --with-model    # scoring included
    .venv/bin/python benchmarks/ingest.py --database postgres://... --workers 2 --threads 2 --clients 3 --json out.json

What it does, in order (every step bounded in count and time; the server is always stopped):

1. prepares the database: creates a PostgreSQL database that does not exist yet, `migrate`, then
   empties the telemetry and model tables (Django's flush SQL for those tables only) so that runs
   are repeatable. It refuses to empty a PostgreSQL database whose name lacks "bench" unless
   --force is given;
2. creates an agent key bound to the fleet's hosts with `manage.py create_agent` (subprocess);
3. with --with-model: ingests --history-batches of generated history through the batch endpoint,
   then `manage.py retrain --sync --wait` so that an active model scores what follows;
4. starts `gunicorn voltaxe.wsgi -w N --threads T` on a free 127.0.0.1 port (SECRET_KEY set,
   DEBUG=0, ALLOWED_HOSTS=127.0.0.1, DATABASE_URL or SQLITE_PATH, MODEL_STORE_DIR in a temp dir)
   and waits for /healthz;
5. throughput: --batches batches of 100 snapshots x ~300 processes through
   POST /api/telemetry/snapshots/batch/ from --clients keep-alive client threads, stopped after
   --duration seconds at the latest; process records stored per second;
6. latency: --warmup then --requests sequential single-snapshot POSTs of ~300 processes;
   p50/p95/p99 in milliseconds.

The payloads come from a small built-in generator: --hosts hosts (linux, windows, darwin) each
with a stable set of ~300 processes (system services, desktop apps, user tools, some
multi-instance workers), varied pids, cpu and memory, a rare odd process now and then, and
timestamps unique per host over the last --days days, so nothing is deduplicated. Bodies are
built before the clock starts so the client's own CPU cost is small.

--cprofile N runs, after the server has stopped, N batches straight through
`telemetry.services.snapshot_ingest_batch` under cProfile in a child process against the same
database, and prints the top functions (and saves the .pstats next to --json, or in the temp dir).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PY = ROOT / ".venv" / "bin" / "python"

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
    ("services.exe", "C:\\Windows\\System32\\services.exe", "SYSTEM"), ("lsass.exe", "C:\\Windows\\System32\\lsass.exe", "SYSTEM"),
    ("winlogon.exe", "C:\\Windows\\System32\\winlogon.exe", "SYSTEM"), ("spoolsv.exe", "C:\\Windows\\System32\\spoolsv.exe", "SYSTEM"),
    ("MsMpEng.exe", "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe", "SYSTEM"),
    ("SearchIndexer.exe", "C:\\Windows\\System32\\SearchIndexer.exe", "SYSTEM"),
    ("dwm.exe", "C:\\Windows\\System32\\dwm.exe", "DWM-1"), ("fontdrvhost.exe", "C:\\Windows\\System32\\fontdrvhost.exe", "UMFD-0"),
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
    ("Finder", "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder"), ("Dock", "/System/Library/CoreServices/Dock.app/Contents/MacOS/Dock"),
    ("Safari", "/Applications/Safari.app/Contents/MacOS/Safari"), ("Slack", "/Applications/Slack.app/Contents/MacOS/Slack"),
    ("Google Chrome Helper (Renderer)", "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/120.0.6099.109/Helpers/Google Chrome Helper (Renderer).app/Contents/MacOS/Google Chrome Helper (Renderer)"),
    ("zsh", "/bin/zsh"), ("iTerm2", "/Applications/iTerm.app/Contents/MacOS/iTerm2"), ("Spotlight", "/System/Library/CoreServices/Spotlight.app/Contents/MacOS/Spotlight"),
    ("cloudd", "/System/Library/PrivateFrameworks/CloudKitDaemon.framework/Support/cloudd"),
]
ODD = [  # rare processes that an active model should flag now and then
    ("xmrig", "/tmp/.x/xmrig", "www-data"), ("nc", "/usr/bin/nc", "nobody"), ("mimikatz.exe", "C:\\Users\\Public\\m.exe", "SYSTEM"),
    ("kdevtmpfsi", "/var/tmp/kdevtmpfsi", "postgres"), ("osascript", "/usr/bin/osascript", "root"),
]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]


class Fleet:
    """Hosts with stable process sets; snapshot() returns one rich payload dict with a fresh timestamp."""

    def __init__(self, hosts: int, processes: int, days: float, seed: int):
        self.rng = random.Random(seed)
        self.processes = processes
        self.now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
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
                      ("gunicorn", "/srv/app/.venv/bin/gunicorn", "www-data"), ("celery-worker-3", "/srv/app/.venv/bin/celery", "www-data"),
                      ("php-fpm: pool www", "/usr/sbin/php-fpm8.2", "www-data"), ("kworker/u8:2-events_unbound", "", "root")]
        elif os_name == "windows":
            for name, exe, u in WINDOWS_SYSTEM:
                rows.append((name, exe, u, exe, rng.uniform(0, 3), rng.uniform(5, 300), 0))
            apps = rng.sample(WINDOWS_USER, k=rng.randint(8, len(WINDOWS_USER)))
            for name, exe in apps:
                exe = exe.format(user=user)
                rows.append((name, exe, user, f'"{exe}"', rng.uniform(0, 15), rng.uniform(10, 900), 2))
            filler = [(WINDOWS_SVCHOST[0], WINDOWS_SVCHOST[1], "SYSTEM"), (WINDOWS_SVCHOST[0], WINDOWS_SVCHOST[1], "LOCAL SERVICE"),
                      ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", user),
                      ("msedgewebview2.exe", "C:\\Program Files (x86)\\Microsoft\\EdgeWebView\\Application\\120.0.2210.91\\msedgewebview2.exe", user)]
        else:
            for name, exe, u in DARWIN_SYSTEM:
                rows.append((name, exe, u, exe, rng.uniform(0, 3), rng.uniform(5, 300), 0))
            for name, exe in DARWIN_USER:
                rows.append((name, exe, user, exe, rng.uniform(0, 15), rng.uniform(10, 900), 2))
            filler = [("Google Chrome Helper (Renderer)", DARWIN_USER[4][1], user),
                      ("com.apple.WebKit.WebContent", "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.WebContent.xpc/Contents/MacOS/com.apple.WebKit.WebContent", user),
                      ("mdworker_shared", "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Versions/A/Support/mdworker_shared", user)]
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


# --- helpers --------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Client:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int, key: str, timeout: float):
        self.port, self.timeout = port, timeout
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json", "Connection": "keep-alive"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):  # one reconnect if the server closed the idle connection
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


BATCH_PATH = "/api/telemetry/snapshots/batch/"
SINGLE_PATH = "/api/telemetry/snapshots/"


def stored_records(status: int, body: bytes) -> tuple[int, int, int]:
    """(records stored, snapshots stored, item errors) of a batch response; raises on an HTTP error."""
    if status != 201:
        raise RuntimeError(f"batch POST answered {status}: {body[:300]!r}")
    results = json.loads(body)["results"]
    records = sum(r.get("processes", 0) for r in results if "error" not in r)
    errors = sum(1 for r in results if "error" in r)
    return records, len(results) - errors, errors


# --- the database -----------------------------------------------------------------------------

FLUSH_CODE = """
from django.core.management.color import no_style
from django.db import connection, transaction
from django.apps import apps
models = [apps.get_model(label) for label in (
    'telemetry.ProcessRecord', 'telemetry.Snapshot', 'telemetry.Endpoint', 'telemetry.AgentHost', 'telemetry.AgentKey',
    'axon.Approval', 'axon.ModelVersion', 'axon.TrainingRun')]
try:
    models += [apps.get_model('django_q', n) for n in ('OrmQ', 'Task', 'Schedule')]
except LookupError:
    pass
tables = [m._meta.db_table for m in models]
sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=True)
with transaction.atomic():
    connection.ops.execute_sql_flush(sql)
if connection.vendor == 'sqlite':
    connection.cursor().execute('VACUUM')
else:
    connection.cursor().execute('VACUUM ANALYZE')
print('flushed', len(tables), 'tables')
"""


def database_env(args, tmp: Path) -> tuple[dict, str]:
    """Environment variables selecting the database, and a label for the report."""
    if args.database == "sqlite" or args.database.startswith("sqlite:"):
        path = args.database.partition("sqlite://")[2] if args.database.startswith("sqlite://") else ""
        path = path or str(tmp / "bench.sqlite3")
        return {"SQLITE_PATH": path, "DATABASE_URL": ""}, f"sqlite ({path})"
    parsed = urlparse(args.database)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise SystemExit(f"--database must be 'sqlite', sqlite:///PATH or postgres://HOST:PORT/NAME, not {args.database!r}")
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("--database must point at 127.0.0.1 (this benchmark only talks to this machine)")
    name = parsed.path.lstrip("/")
    if "bench" not in name and not args.force:
        raise SystemExit(f"refusing to empty the telemetry tables of database {name!r}: its name lacks 'bench' (use --force)")
    ensure_pg_database(args, parsed, name)
    return {"DATABASE_URL": args.database}, f"postgresql ({parsed.hostname}:{parsed.port or 5432}/{name})"


def ensure_pg_database(args, parsed, name: str) -> None:
    code = (
        "import sys, psycopg2\n"
        "kw = dict(host=sys.argv[1], port=int(sys.argv[2]), connect_timeout=5)\n"
        "if sys.argv[4]: kw['user'] = sys.argv[4]\n"
        "if sys.argv[5]: kw['password'] = sys.argv[5]\n"
        "try:\n"
        "    psycopg2.connect(dbname=sys.argv[3], **kw).close()\n"
        "except psycopg2.OperationalError as exc:\n"
        "    if 'does not exist' not in str(exc): raise\n"
        "    c = psycopg2.connect(dbname='postgres', **kw); c.autocommit = True\n"
        "    c.cursor().execute('CREATE DATABASE \"%s\"' % sys.argv[3].replace('\"', '')); c.close()\n"
        "    print('created database', sys.argv[3])\n"
    )
    subprocess.run([args.python, "-c", code, parsed.hostname, str(parsed.port or 5432), name,
                    parsed.username or "", parsed.password or ""], check=True, timeout=60)


def manage(args, env: dict, *argv: str, timeout: float, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([args.python, str(ROOT / "manage.py"), *argv], cwd=ROOT, env=env, check=True,
                          timeout=timeout, text=True, capture_output=capture)


# --- the server -----------------------------------------------------------------------------------


class Server:
    def __init__(self, args, env: dict, tmp: Path):
        self.args, self.env, self.tmp = args, env, tmp
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "gunicorn.log"

    @property
    def command(self) -> list[str]:
        a = self.args
        return [a.python, "-m", "gunicorn", "voltaxe.wsgi", "-w", str(a.workers), "--threads", str(a.threads),
                "-b", f"127.0.0.1:{self.port}", "--timeout", "120", "--keep-alive", "30",
                "--error-logfile", str(self.log), "--log-level", "warning", *a.gunicorn_arg]

    def start(self) -> None:
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=self._logf, stderr=self._logf,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status == 200:
                    return
                if resp.status >= 400 and resp.status != 503:
                    raise RuntimeError(f"/healthz answered {resp.status}: {body[:300]!r}")
            except (ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz within 60 s; see {self.log}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._logf.close()
            return
        self.proc.send_signal(signal.SIGTERM)  # gunicorn's graceful stop; it ends its workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            self._logf.close()


# --- the measurements ------------------------------------------------------------------------------


def ingest_batches(port: int, key: str, bodies: list[bytes], *, clients: int, duration: float, timeout: float) -> dict:
    """POST the bodies from `clients` keep-alive threads until they run out or `duration` passes."""
    lock = threading.Lock()
    queue = list(reversed(bodies))
    totals = {"records": 0, "snapshots": 0, "errors": 0, "batches": 0}
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + duration

    def work() -> None:
        client = Client(port, key, timeout)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if not queue or failures:
                        return
                    body = queue.pop()
                t0 = time.perf_counter()
                status, answer = client.post(BATCH_PATH, body)
                elapsed = time.perf_counter() - t0
                records, snaps, errors = stored_records(status, answer)
                with lock:
                    totals["records"] += records
                    totals["snapshots"] += snaps
                    totals["errors"] += errors
                    totals["batches"] += 1
                    latencies.append(elapsed)
        except Exception as exc:  # noqa: BLE001 - reported below
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + timeout + 30)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError("throughput client failed: " + failures[0])
    totals["seconds"] = elapsed
    totals["records_per_s"] = totals["records"] / elapsed if elapsed else 0.0
    totals["batch_p50_ms"] = percentile(latencies, 50) * 1000
    totals["batch_max_ms"] = max(latencies, default=float("nan")) * 1000
    return totals


def single_latency(port: int, key: str, bodies: list[bytes], *, warmup: int, duration: float, timeout: float) -> dict:
    client = Client(port, key, timeout)
    times: list[float] = []
    flagged = 0
    scored = 0
    deadline = time.monotonic() + duration
    try:
        for i, body in enumerate(bodies):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            status, answer = client.post(SINGLE_PATH, body)
            elapsed = time.perf_counter() - t0
            if status != 201:
                raise RuntimeError(f"single POST answered {status}: {answer[:300]!r}")
            if i >= warmup:
                times.append(elapsed * 1000)
                result = json.loads(answer)
                scored += result["model_version"] is not None
                flagged += len(result["anomalies"])
    finally:
        client.close()
    return {
        "requests": len(times), "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
        "p99_ms": percentile(times, 99), "max_ms": max(times, default=float("nan")),
        "mean_ms": statistics.fmean(times) if times else float("nan"), "scored": scored, "anomalies": flagged,
    }


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- cProfile child ---------------------------------------------------------------------------------


def cprofile_child(args) -> int:
    """Runs inside a child process with the benchmark's environment: profile the batch service in-process."""
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voltaxe.settings")
    import django

    django.setup()
    from telemetry.models import AgentKey
    from telemetry.services import snapshot_ingest_batch

    agent = AgentKey.objects.order_by("-created").first()
    fleet = Fleet(args.hosts, args.processes, args.days, seed=args.seed + 99)
    payloads = [json.loads(encode(fleet.batch(args.batch_size))) for _ in range(args.cprofile + 1)]
    snapshot_ingest_batch(payloads=payloads[0], agent=agent)  # warm: model load, caches, connection
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    records = 0
    for payload in payloads[1:]:
        results = snapshot_ingest_batch(payloads=payload, agent=agent)
        records += sum(r.get("processes", 0) for r in results if "error" not in r)
    profiler.disable()
    elapsed = time.perf_counter() - t0
    print(f"in-process snapshot_ingest_batch: {records} records in {elapsed:.2f} s = {records / elapsed:,.0f} records/s "
          f"(one process, under cProfile)")
    profiler.dump_stats(args._cprofile_out)
    stats = pstats.Stats(args._cprofile_out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(35)
    return 0


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--database", default="sqlite", help="'sqlite' (a temp file), sqlite:///PATH, or postgres://127.0.0.1:5432/NAME")
    p.add_argument("--force", action="store_true", help="empty the telemetry tables even if the database name lacks 'bench'")
    p.add_argument("--with-model", action="store_true", help="ingest history, train a model (retrain --sync --wait), then measure with scoring")
    p.add_argument("--history-batches", type=int, default=10, help="batches of history before training (--with-model)")
    p.add_argument("--workers", "-w", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--threads", "-t", type=int, default=2, help="gunicorn threads per worker (gthread when > 1)")
    p.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment (repeatable), e.g. DB_CONN_MAX_AGE=600")
    p.add_argument("--redis", default="", help="REDIS_URL for the server (default: none, local-memory cache)")
    p.add_argument("--clients", "-c", type=int, default=2, help="concurrent client threads for the throughput phase")
    p.add_argument("--batches", type=int, default=30, help="batches in the throughput phase (at most)")
    p.add_argument("--batch-size", type=int, default=100, help="snapshots per batch (the API allows up to 100)")
    p.add_argument("--processes", type=int, default=300, help="processes per snapshot")
    p.add_argument("--duration", type=float, default=60, help="throughput phase stops after this many seconds at the latest")
    p.add_argument("--warmup-batches", type=int, default=2, help="batches sent before the throughput clock starts")
    p.add_argument("--requests", type=int, default=300, help="single-snapshot POSTs measured for latency")
    p.add_argument("--warmup", type=int, default=30, help="single-snapshot POSTs sent first and not measured")
    p.add_argument("--latency-duration", type=float, default=120, help="latency phase stops after this many seconds at the latest")
    p.add_argument("--hosts", type=int, default=200, help="distinct hosts in the generated fleet")
    p.add_argument("--days", type=float, default=7, help="timestamps spread over this many past days")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120, help="per-request timeout in seconds")
    p.add_argument("--no-prime", action="store_true",
                   help="do not register each host with one sequential snapshot first (exposes the new-host race)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="after the run, profile N batches in-process with cProfile")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (SQLite file, gunicorn log, model store)")
    p.add_argument("--json", default="", metavar="PATH", help="also save the results as JSON")
    p.add_argument("--python", default=str(DEFAULT_PY if DEFAULT_PY.exists() else sys.executable), help=argparse.SUPPRESS)
    p.add_argument("--_cprofile-child", dest="_cprofile_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_cprofile-out", dest="_cprofile_out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.batch_size <= 100:
        p.error("--batch-size must be 1..100 (the API's limit)")
    for name in ("workers", "threads", "clients", "processes", "hosts"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._cprofile_child:
        return cprofile_child(args)

    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-bench-"))
    db_env, db_label = database_env(args, tmp)
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH", "DEBUG", "REDIS_URL"}}
    env.update(db_env)
    env.update({
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(40), "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "MODEL_STORE_DIR": str(tmp / "models"), "QSTATS_CACHE_DIR": str(tmp / "qstats"), "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    if not env["DATABASE_URL"]:
        env.pop("DATABASE_URL")
    if args.redis:
        env["REDIS_URL"] = args.redis
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env takes KEY=VALUE, not {item!r}")
        env[key] = value

    results: dict = {
        "database": db_label, "with_model": args.with_model,
        "server": {"command": "gunicorn voltaxe.wsgi -w %d --threads %d" % (args.workers, args.threads),
                   "workers": args.workers, "threads": args.threads, "extra": args.gunicorn_arg, "env": args.env,
                   "redis": bool(args.redis)},
        "client": {"clients": args.clients, "batch_size": args.batch_size, "processes": args.processes, "hosts": args.hosts},
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": os.getloadavg(), "cpus": os.cpu_count(),
    }
    server = Server(args, env, tmp)
    fleet = Fleet(args.hosts, args.processes, args.days, args.seed)
    try:
        say(f"database: {db_label}; migrate and flush")
        manage(args, env, "migrate", "--no-input", timeout=600, capture=True)
        out = manage(args, env, "shell", "-c", FLUSH_CODE, timeout=1800, capture=True)
        say(out.stdout.strip())
        # One key bound to every host of the fleet, so that the host-ownership check is part of what is measured.
        hosts = [arg for hostname, _, _ in fleet.hosts for arg in ("--host", hostname)]
        key = manage(args, env, "create_agent", "bench-agent", *hosts, timeout=120, capture=True).stdout.strip().splitlines()[-1]

        if not args.no_prime:
            # One snapshot per host, sequentially, before any concurrent traffic: two requests creating the same
            # new Endpoint at once race in telemetry.services._store (IntegrityError -> HTTP 500).
            server.start()
            fleet.odd_rate = 0.0
            primer = Client(server.port, key, args.timeout)
            try:
                for _ in range(args.hosts):
                    status, body = primer.post(SINGLE_PATH, encode(fleet.snapshot()))
                    if status != 201:
                        raise RuntimeError(f"priming POST answered {status}: {body[:300]!r}")
            finally:
                primer.close()
            fleet.odd_rate = 0.05
            server.stop()
            server = Server(args, env, tmp)
            say(f"primed {args.hosts} hosts (one snapshot each)")

        if args.with_model:
            say(f"history: {args.history_batches} batches of {args.batch_size} x {args.processes} processes")
            fleet.odd_rate = 0.0  # the odd processes stay unseen, so the model has something to flag
            history = [encode(fleet.batch(args.batch_size)) for _ in range(args.history_batches)]
            fleet.odd_rate = 0.05
            server.start()
            h = ingest_batches(server.port, key, history, clients=args.clients, duration=max(args.duration, 600),
                               timeout=args.timeout)
            server.stop()
            say(f"history stored: {h['records']:,} records in {h['seconds']:.1f} s (unscored)")
            results["history"] = h
            say("training: manage.py retrain --sync --wait")
            t0 = time.perf_counter()
            out = manage(args, env, "retrain", "--sync", "--wait", "--timeout", "900", "--reason", "benchmark",
                         timeout=1200, capture=True)
            results["training_seconds"] = round(time.perf_counter() - t0, 1)
            say(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "trained")
            server = Server(args, env, tmp)  # a fresh server: the model is loaded by each worker on first use

        say("server: " + " ".join(server.command[2:]))
        server.start()
        probe = Client(server.port, key, 10)
        status, body = probe.get("/healthz")
        probe.close()
        results["healthz"] = json.loads(body)
        say(f"/healthz: {body.decode()}")

        if not args.skip_throughput:
            gen_t0 = time.perf_counter()
            warm = [encode(fleet.batch(args.batch_size)) for _ in range(args.warmup_batches)]
            bodies = [encode(fleet.batch(args.batch_size)) for _ in range(args.batches)]
            say(f"throughput: {len(bodies)} batches ({sum(map(len, bodies)) / 1e6:.0f} MB JSON, built in "
                f"{time.perf_counter() - gen_t0:.1f} s), {args.clients} client(s), at most {args.duration:g} s")
            if warm:
                ingest_batches(server.port, key, warm, clients=min(args.clients, len(warm)), duration=300, timeout=args.timeout)
            t = ingest_batches(server.port, key, bodies, clients=args.clients, duration=args.duration, timeout=args.timeout)
            del bodies
            results["throughput"] = t
            say(f"throughput: {t['records']:,} records / {t['seconds']:.1f} s = {t['records_per_s']:,.0f} records/s "
                f"({t['batches']} batches, batch p50 {t['batch_p50_ms']:.0f} ms, item errors {t['errors']})")

        if not args.skip_latency:
            singles = [encode(fleet.snapshot()) for _ in range(args.warmup + args.requests)]
            say(f"latency: {args.warmup} warm-up + {args.requests} sequential single POSTs of {args.processes} processes")
            lat = single_latency(server.port, key, singles, warmup=args.warmup, duration=args.latency_duration,
                                 timeout=args.timeout)
            results["latency"] = lat
            say(f"latency: p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                f"({lat['requests']} requests, {lat['scored']} scored, {lat['anomalies']} anomalies)")
    except subprocess.CalledProcessError as exc:
        print(f"command failed ({exc.returncode}): {' '.join(map(str, exc.cmd[:4]))}\n{exc.stdout or ''}\n{exc.stderr or ''}",
              file=sys.stderr)
        print(f"kept {tmp}", file=sys.stderr)
        return 1
    except BaseException:
        print(f"--- last lines of {server.log} (kept {tmp}) ---\n{server.tail(12)}", file=sys.stderr)
        raise
    finally:
        server.stop()

    if args.cprofile:
        out_path = Path(args.json).with_suffix(".pstats") if args.json else tmp / "ingest.pstats"
        say(f"cProfile: {args.cprofile} batches through snapshot_ingest_batch in-process -> {out_path}")
        subprocess.run([args.python, str(Path(__file__).resolve()), "--_cprofile-child", "--_cprofile-out", str(out_path),
                        "--cprofile", str(args.cprofile), "--hosts", str(args.hosts), "--processes", str(args.processes),
                        "--batch-size", str(args.batch_size), "--days", str(args.days), "--seed", str(args.seed)],
                       cwd=ROOT, env=env, check=False, timeout=1800)
        results["cprofile"] = str(out_path)

    results["loadavg_after"] = os.getloadavg()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        say(f"saved {args.json}")
    if args.keep_tmp:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_table(r: dict) -> None:
    t, lat = r.get("throughput"), r.get("latency")
    rows = [("database", r["database"]), ("model", f"v{r['healthz'].get('active_model')}" if r.get("healthz", {}).get("active_model") else "none"),
            ("server", r["server"]["command"]),
            ("load average", "%.1f before, %.1f after (%d CPUs; other load skews the figures)"
             % (r["loadavg_before"][0], r["loadavg_after"][0], r["cpus"]))]
    if t:
        ok = "OK" if t["records_per_s"] >= 20_000 else "MISSED"
        rows += [("throughput", f"{t['records_per_s']:,.0f} records/s  [target >= 20,000: {ok}]"),
                 ("", f"{t['records']:,} records, {t['batches']} batches in {t['seconds']:.1f} s, {r['client']['clients']} clients")]
    if lat:
        ok = "OK" if lat["p99_ms"] <= 50 else "MISSED"
        rows += [("latency p50/p95/p99", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} / {lat['p99_ms']:.1f} ms  [target p99 <= 50: {ok}]"),
                 ("", f"{lat['requests']} requests, max {lat['max_ms']:.1f} ms, {lat['anomalies']} anomalies returned")]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()


if __name__ == "__main__":
    sys.exit(main())

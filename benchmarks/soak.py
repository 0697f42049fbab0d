#!/usr/bin/env python3
"""Soak test: a production-shaped stack under steady ingestion while a security admin keeps pressing the panic button.

    .venv/bin/python benchmarks/soak.py --minutes 10 --database postgres://127.0.0.1:5432/voltaxe_soak \
        --redis redis://127.0.0.1:6379/12 [--rate 20] [--press-every 120] [--json PATH]

What it does (every loop bounded in count and time; every process it starts is stopped in `finally`):

1. prepares the database (created if missing; its name must contain "soak" or "bench"): migrate, then
   empty the telemetry, model and queue tables (benchmarks/ingest.py's FLUSH_CODE); empties the Redis
   database given (never db 15);
2. creates an agent key (`manage.py create_agent`) and a security admin user (group "Security Admin");
3. starts gunicorn (--workers, gthread --threads, keep-alive) with DATABASE_URL and REDIS_URL (Redis is then
   the cache, the rate limits and the django-q2 broker), ingests --history-batches of history through the
   batch endpoint and trains a first model (`manage.py retrain --sync --wait`);
4. starts two `manage.py qcluster` workers (Q_WORKERS=1 each);
5. for --minutes: agents send --rate snapshots/s in total on keep-alive connections, half of them as single
   POSTs (--single-agents threads) and half in batches of --batch-size (--batch-agents threads); a security
   admin (JWT) presses POST /api/axon/retrain every --press-every seconds and follows the run; an analyst
   reads /api/telemetry/summary/ every --read-every seconds; psutil samples the RSS of every gunicorn and
   qcluster process every --sample-every seconds;
6. waits (bounded) for a run in flight, then compares what was sent with what is stored, by
   (hostname, timestamp) and by process count, and reads the training runs and model versions back.

Exit status 1 on any 5xx, client error (timeout, reset), or snapshot sent but not stored (or stored short).
RETRAIN_USER_RATE / RETRAIN_GLOBAL_RATE are raised to twice the press rate, TOKEN_RATE to 1000/m.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode, urlparse

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import ingest  # noqa: E402  (benchmarks/ingest.py: Fleet, Server, manage, percentile, FLUSH_CODE, ...)

ROOT = ingest.ROOT
MIB = 1024 * 1024


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def loadavg() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


# --- HTTP ------------------------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection; request() reconnects once if the server dropped an idle connection."""

    def __init__(self, port: int, timeout: float = 60.0, headers: dict | None = None):
        self.port, self.timeout = port, timeout
        self.headers = dict(headers or {})
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def connect(self) -> None:
        if self.conn.sock is None:
            self.conn.connect()

    @property
    def local_port(self) -> int | None:
        return self.conn.sock.getsockname()[1] if self.conn.sock is not None else None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, response headers as a list of pairs, body, seconds)."""
        h = {**self.headers, **(headers or {})}
        for attempt in range(2):
            t0 = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                elapsed = time.perf_counter() - t0
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, resp.getheaders(), data, elapsed
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def jwt_obtain(port: int, username: str, password: str) -> str:
    c = Http(port, 30)
    try:
        status, _, body, _ = c.request("POST", "/api/auth/token/", json.dumps({"username": username, "password": password}).encode(),
                                       {"Content-Type": "application/json"})
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"token for {username} answered {status}: {body[:200]!r}")
    return json.loads(body)["access"]


def session_login(port: int, username: str, password: str) -> dict:
    """Log in through the /login/ form; the cookies to send afterwards."""
    c = Http(port, 30)
    try:
        status, headers, body, _ = c.request("GET", "/login/")
        if status != 200:
            raise RuntimeError(f"GET /login/ answered {status}")
        cookies = _cookies(headers)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
        form = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token,
                          "next": "/live-telemetry/"}).encode()
        status, headers, body, _ = c.request("POST", "/login/", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": _cookie_header(cookies),
            "Referer": f"http://127.0.0.1:{port}/login/"})
        cookies.update(_cookies(headers))
        if status != 302 or "sessionid" not in cookies:
            raise RuntimeError(f"POST /login/ answered {status} without a session: {body[:300]!r}")
        return cookies
    finally:
        c.close()


def _cookies(headers) -> dict:
    out = {}
    for k, v in headers:
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            out[name.strip()] = rest.split(";", 1)[0]
    return out


def _cookie_header(cookies: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


# --- the stack ---------------------------------------------------------------------------------------


USERS_CODE = """
import json, os
from django.contrib.auth.models import Group, User
for u in json.loads(os.environ['BENCH_USERS']):
    user, _ = User.objects.get_or_create(username=u['username'])
    user.email = u.get('email', '')
    user.is_staff = user.is_superuser = False
    user.set_password(u['password'])
    user.save()
    user.groups.set([Group.objects.get(name=u['group'])])
print('users ready:', len(json.loads(os.environ['BENCH_USERS'])))
"""

DB_STATS_CODE = ""  # (the parent reads the database with psycopg2 directly)


def stack_env(*, database: str, redis_url: str, model_dir: Path, tmp: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH", "DEBUG", "REDIS_URL"}}
    env.update({
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(40), "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database, "MODEL_STORE_DIR": str(model_dir), "QSTATS_CACHE_DIR": str(tmp / "qstats"),
        "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", "Q_WORKERS": "1",
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def check_redis_url(url: str) -> None:
    p = urlparse(url)
    if p.hostname not in {"127.0.0.1", "localhost"}:
        raise SystemExit("--redis must point at 127.0.0.1")
    db = int((p.path or "/0").lstrip("/") or 0)
    if db == 15 or not 10 <= db <= 14:
        raise SystemExit("--redis must use a database number from 10 to 14 (15 belongs to the tests)")


def redis_flush(url: str) -> None:
    import redis

    check_redis_url(url)
    redis.Redis.from_url(url, socket_timeout=5).flushdb()


def db_prepare(python: str, database: str, env: dict, *, allow=("bench", "soak")) -> None:
    """Create the database if needed, migrate, empty the telemetry/axon/queue tables."""
    parsed = urlparse(database)
    name = parsed.path.lstrip("/")
    if parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise SystemExit("--database must point at 127.0.0.1")
    if not any(a in name for a in allow):
        raise SystemExit(f"refusing to empty database {name!r}: its name lacks one of {allow}")
    a = SimpleNamespace(python=python)
    ingest.ensure_pg_database(a, parsed, name)
    ingest.manage(a, env, "migrate", "--no-input", timeout=600, capture=True)
    out = ingest.manage(a, env, "shell", "-c", ingest.FLUSH_CODE, timeout=1800, capture=True)
    say(out.stdout.strip())
    # The flush empties django_q's schedules too; migrate again so the app's post_migrate puts them back.
    ingest.manage(a, env, "migrate", "--no-input", timeout=600, capture=True)


def users_create(python: str, env: dict, users: list[dict]) -> None:
    ingest.manage(SimpleNamespace(python=python), {**env, "BENCH_USERS": json.dumps(users)}, "shell", "-c", USERS_CODE,
                  timeout=600, capture=True)


def agent_key(python: str, env: dict, name: str) -> str:
    # A relay: the soak's simulated fleet reports through one key.
    out = ingest.manage(SimpleNamespace(python=python), env, "create_agent", name, "--any-host", timeout=120, capture=True)
    return out.stdout.strip().splitlines()[-1]


class Web:
    """gunicorn (benchmarks/ingest.py's Server) with a fixed worker/thread count."""

    def __init__(self, python: str, env: dict, tmp: Path, *, workers: int, threads: int):
        self.args = SimpleNamespace(python=python, workers=workers, threads=threads, gunicorn_arg=[])
        self.server = ingest.Server(self.args, env, tmp)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc else None

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def workers(self) -> list:
        import psutil

        try:
            return psutil.Process(self.pid).children()
        except Exception:
            return []


class QCluster:
    def __init__(self, python: str, env: dict, tmp: Path, n: int):
        self.cmd = [python, str(ROOT / "manage.py"), "qcluster"]
        self.env, self.log = env, tmp / f"qcluster-{n}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self._logf, stderr=self._logf,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of its process group (django-q2's children)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._logf.close()

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stop_all(web: "Web | None", clusters: list[QCluster]) -> None:
    """SIGTERM every qcluster group at once (each may take a while to end), then stop them and gunicorn."""
    for q in clusters:
        if q.proc is not None and q.proc.poll() is None:
            try:
                os.killpg(q.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for q in clusters:
        q.stop()
    if web is not None:
        web.stop()


def wait_worker_alive(port: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        c = Http(port, 10)
        try:
            status, _, body, _ = c.request("GET", "/healthz")
            if status == 200 and json.loads(body).get("worker") == "ok":
                return True
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(1)
    return False


# --- recording -----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, t0: float):
        self.t0 = t0
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.codes: dict[str, Counter] = defaultdict(Counter)
        self.samples_5xx: list[str] = []
        self.exceptions: list[str] = []

    def add(self, endpoint: str, status: int | str, seconds: float | None, body: bytes = b"") -> None:
        with self.lock:
            self.codes[endpoint][status] += 1
            if seconds is not None:
                self.lat[endpoint].append(seconds * 1000)
            if isinstance(status, int) and status >= 500 and len(self.samples_5xx) < 10:
                self.samples_5xx.append(f"{time.monotonic() - self.t0:.0f}s {endpoint} {status}: {body[:300]!r}")
            if isinstance(status, str) and len(self.exceptions) < 10:
                self.exceptions.append(f"{time.monotonic() - self.t0:.0f}s {endpoint}: {status}")


class RssSampler(threading.Thread):
    """Every `every` s: the RSS of the gunicorn master and workers and of each qcluster and its descendants."""

    def __init__(self, web: Web, clusters: list[QCluster], t0: float, every: float, stop: threading.Event):
        super().__init__(daemon=True, name="rss")
        self.web, self.clusters, self.t0, self.every, self.stop = web, clusters, t0, every, stop
        self.series: dict[str, list[tuple[float, float]]] = defaultdict(list)   # label -> [(t, MiB)]
        self.what: dict[str, str] = {}

    def sample(self) -> None:
        import psutil

        t = time.monotonic() - self.t0
        procs = []
        try:
            master = psutil.Process(self.web.pid)
            procs.append(("gunicorn-master", master))
            procs += [("gunicorn-worker", p) for p in master.children()]
        except psutil.Error:
            pass
        for i, q in enumerate(self.clusters, 1):
            try:
                root = psutil.Process(q.proc.pid)
                procs.append((f"qcluster{i}-main", root))
                procs += [(f"qcluster{i}-child", p) for p in root.children(recursive=True)]
            except (psutil.Error, AttributeError):
                pass
        for role, p in procs:
            try:
                rss = p.memory_info().rss / MIB
                label = f"{role}:{p.pid}"
                if label not in self.what:
                    try:
                        self.what[label] = " ".join(p.cmdline())[-90:] or p.name()
                    except psutil.Error:
                        self.what[label] = p.name()
                self.series[label].append((t, rss))
            except psutil.Error:
                pass

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 100_000:
            n += 1
            self.sample()
            self.stop.wait(self.every)

    def table(self, minutes: float) -> list[str]:
        labels = sorted(self.series, key=lambda l: (l.split(":")[0], int(l.split(":")[1])))
        short = {l: _short(l) for l in labels}
        lines = ["RSS (MiB) at each minute (last sample before the mark); '-' = process not alive then:"]
        lines.append("  min " + " ".join(f"{short[l]:>9}" for l in labels) + f" {'total':>8}")
        marks = list(range(0, int(math.ceil(minutes - 1e-9)) + 1))
        for m in marks:
            row, total = [], 0.0
            for l in labels:
                pts = [v for t, v in self.series[l] if t <= m * 60 + 0.5]
                alive_after = any(t >= m * 60 - 10 for t, _ in self.series[l])
                if pts and alive_after:
                    row.append(f"{pts[-1]:9.0f}")
                    total += pts[-1]
                else:
                    row.append(f"{'-':>9}")
            lines.append(f"  {m:3d} " + " ".join(row) + f" {total:8.0f}")
        lines.append("  max " + " ".join(f"{max(v for _, v in self.series[l]):9.0f}" for l in labels))
        lines.append("processes:")
        for l in labels:
            vals = [v for _, v in self.series[l]]
            first_t, last_t = self.series[l][0][0], self.series[l][-1][0]
            lines.append(f"  {short[l]:>9} {l:<28} first {vals[0]:6.0f} last {vals[-1]:6.0f} max {max(vals):6.0f} MiB "
                         f"(seen {first_t:5.0f}-{last_t:5.0f} s)  {self.what.get(l, '')}")
        return lines

    def summary(self) -> dict:
        return {l: {"max_mib": round(max(v for _, v in s), 1), "first_mib": round(s[0][1], 1), "last_mib": round(s[-1][1], 1),
                    "cmd": self.what.get(l, ""), "series": [(round(t), round(v, 1)) for t, v in s[:: max(1, len(s) // 60)]]}
                for l, s in self.series.items()}


def _short(label: str) -> str:
    role, pid = label.split(":")
    abbrev = {"gunicorn-master": "gm", "gunicorn-worker": "gw"}.get(role)
    if abbrev is None:
        n = re.search(r"qcluster(\d+)-(\w+)", role)
        abbrev = f"q{n.group(1)}{'m' if n.group(2) == 'main' else 'c'}"
    return f"{abbrev}{pid}"


# --- the soak ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--database", default="postgres://127.0.0.1:5432/voltaxe_soak")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    p.add_argument("--rate", type=float, default=20, help="snapshots per second, in total")
    p.add_argument("--press-every", type=float, default=120, help="seconds between panic-button presses")
    p.add_argument("--processes", type=int, default=100, help="processes per snapshot")
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--single-agents", type=int, default=4, help="threads posting single snapshots (half the rate)")
    p.add_argument("--batch-agents", type=int, default=2, help="threads posting batches (the other half)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    p.add_argument("--qclusters", type=int, default=2)
    p.add_argument("--history-batches", type=int, default=20, help="batches of 100 snapshots ingested before the first model")
    p.add_argument("--read-every", type=float, default=10, help="seconds between analyst reads of /api/telemetry/summary/")
    p.add_argument("--sample-every", type=float, default=5, help="seconds between RSS samples")
    p.add_argument("--timeout", type=float, default=60, help="per-request timeout")
    p.add_argument("--json", default="", metavar="PATH")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--python", default=str(ingest.DEFAULT_PY if ingest.DEFAULT_PY.exists() else sys.executable),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.press_every <= 0:
        p.error("--minutes, --rate and --press-every must be positive")
    if not 1 <= args.batch_size <= 100:
        p.error("--batch-size must be 1..100")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check_redis_url(args.redis)
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-soak-"))
    presses_per_hour = 3600 / args.press_every
    rate = f"{max(2, math.ceil(presses_per_hour * 2))}/h"
    env = stack_env(database=args.database, redis_url=args.redis, model_dir=tmp / "models", tmp=tmp, extra={
        "RETRAIN_USER_RATE": rate, "RETRAIN_GLOBAL_RATE": rate, "TOKEN_RATE": "1000/m"})
    say(f"soak: {args.minutes:g} min at {args.rate:g} snapshots/s x {args.processes} processes, press every "
        f"{args.press_every:g} s (RETRAIN_USER_RATE=RETRAIN_GLOBAL_RATE={rate}); tmp {tmp}; load average {loadavg()}")
    web: Web | None = None
    clusters: list[QCluster] = []
    result: dict = {"args": vars(args), "loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}
    failed = False
    try:
        redis_flush(args.redis)
        db_prepare(args.python, args.database, env)
        key = agent_key(args.python, env, "soak-agent")
        admin_pw = secrets.token_urlsafe(12)
        users_create(args.python, env, [{"username": "soak-admin", "email": "soak-admin@voltaxe.bench",
                                         "password": admin_pw, "group": "Security Admin"}])
        web = Web(args.python, env, tmp, workers=args.workers, threads=args.threads)
        web.start()
        say(f"gunicorn -w {args.workers} --threads {args.threads} on 127.0.0.1:{web.port}")

        fleet = ingest.Fleet(args.hosts, args.processes, 7, seed=11)
        fleet.odd_rate = 0.0
        history = [ingest.encode(fleet.batch(100)) for _ in range(args.history_batches)]
        fleet.odd_rate = 0.05
        t = time.monotonic()
        h = ingest.ingest_batches(web.port, key, history, clients=2, duration=900, timeout=args.timeout)
        del history
        say(f"history: {h['records']:,} records, {h['snapshots']:,} snapshots in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        out = ingest.manage(SimpleNamespace(python=args.python), env, "retrain", "--sync", "--wait", "--timeout", "600",
                            "--reason", "soak: first model", timeout=900, capture=True)
        say(f"first model in {time.monotonic() - t:.1f} s: {out.stdout.strip().splitlines()[-1]}")
        result["history"] = {"records": h["records"], "snapshots": h["snapshots"]}

        for i in range(args.qclusters):
            q = QCluster(args.python, env, tmp, i + 1)
            q.start()
            clusters.append(q)
        if not wait_worker_alive(web.port, 90):
            raise RuntimeError("the qcluster workers did not report alive within 90 s:\n" + clusters[0].tail())
        say(f"{args.qclusters} qcluster workers alive; soaking for {args.minutes:g} min; load average {loadavg()}")
        result.update(soak(args, web, clusters, key, admin_pw, fleet, tmp))
        failed = not result["ok"]
    except BaseException as exc:
        failed = True
        say(f"FAILED: {type(exc).__name__}: {exc}")
        if web is not None:
            print(f"--- gunicorn log tail ---\n{web.server.tail(20)}", file=sys.stderr)
        for q in clusters:
            print(f"--- {q.log.name} tail ---\n{q.tail(20)}", file=sys.stderr)
        if not isinstance(exc, Exception):
            raise
    finally:
        stop_all(web, clusters)
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"saved {args.json}")
    if not args.keep_tmp and not failed:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        say(f"kept {tmp} (logs)")
    say(f"{'FAILED' if failed else 'OK'}; load average {loadavg()}")
    return 1 if failed else 0


def soak(args, web: Web, clusters: list[QCluster], key: str, admin_pw: str, fleet, tmp: Path) -> dict:
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    stop = threading.Event()
    rec = Recorder(t0)
    gen_lock = threading.Lock()
    sent: dict[tuple[str, str], int] = {}        # (hostname, timestamp) -> processes
    acked: set[tuple[str, str]] = set()
    item_errors: list[str] = []
    versions_seen: dict[int, Counter] = defaultdict(Counter)   # minute -> model_version -> responses
    lag = Counter()
    agent_headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    max_requests = int(args.minutes * 60 * args.rate * 2) + 100

    def generate(n: int) -> list[dict]:
        with gen_lock:
            snaps = fleet.batch(n)
            for s in snaps:
                sent[(s["hostname"], s["timestamp"])] = len(s["processes"])
        return snaps

    def note_result(r: dict) -> None:
        minute = int((time.monotonic() - t0) // 60)
        with rec.lock:
            versions_seen[minute][r.get("model_version")] += 1

    def agent(kind: str, per_second: float, batch: int, idx: int) -> None:
        client = Http(web.port, args.timeout, agent_headers)
        interval = batch / per_second
        next_t = time.monotonic() + interval * idx / max(1, args.single_agents + args.batch_agents)
        path = ingest.SINGLE_PATH if kind == "single" else ingest.BATCH_PATH
        name = "POST /api/telemetry/snapshots/" if kind == "single" else "POST /api/telemetry/snapshots/batch/"
        n = 0
        try:
            while not stop.is_set() and time.monotonic() < end and n < max_requests:
                n += 1
                delay = next_t - time.monotonic()
                if delay > 0:
                    if stop.wait(delay):
                        break
                elif delay < -interval * 3:
                    lag[kind] += 1
                    next_t = time.monotonic()
                next_t += interval
                snaps = generate(batch)
                body = ingest.encode(snaps[0] if kind == "single" else snaps)
                try:
                    status, _, answer, secs = client.request("POST", path, body)
                except Exception as exc:  # noqa: BLE001
                    rec.add(name, f"{type(exc).__name__}", None)
                    client.close()
                    client = Http(web.port, args.timeout, agent_headers)
                    continue
                rec.add(name, status, secs, answer)
                if kind == "single" and status in (200, 201):
                    s = snaps[0]
                    acked.add((s["hostname"], s["timestamp"]))
                    note_result(json.loads(answer))
                elif kind == "batch" and status == 201:
                    for s, r in zip(snaps, json.loads(answer)["results"]):
                        if "error" in r:
                            if len(item_errors) < 10:
                                item_errors.append(json.dumps(r)[:300])
                        else:
                            acked.add((s["hostname"], s["timestamp"]))
                            note_result(r)
        finally:
            client.close()

    presses: list[dict] = []
    token_box = {"token": None, "at": 0.0}

    def bearer(client: Http) -> dict:
        if token_box["token"] is None or time.monotonic() - token_box["at"] > 600:
            t = time.perf_counter()
            token_box["token"] = jwt_obtain(web.port, "soak-admin", admin_pw)
            token_box["at"] = time.monotonic()
            rec.add("POST /api/auth/token/", 200, time.perf_counter() - t)
        return {"Authorization": f"Bearer {token_box['token']}", "Content-Type": "application/json"}

    def admin() -> None:
        client = Http(web.port, args.timeout)
        next_press = t0 + min(30.0, args.press_every / 2)
        n = 0
        try:
            while not stop.is_set() and time.monotonic() < end and n < 10_000:
                n += 1
                if stop.wait(max(0.0, next_press - time.monotonic())):
                    break
                if time.monotonic() >= end:
                    break
                next_press += args.press_every
                body = json.dumps({"reason": f"soak press {len(presses) + 1}"}).encode()
                try:
                    status, _, answer, secs = client.request("POST", "/api/axon/retrain", body, bearer(client))
                except Exception as exc:  # noqa: BLE001
                    rec.add("POST /api/axon/retrain", type(exc).__name__, None)
                    client.close()
                    client = Http(web.port, args.timeout)
                    continue
                rec.add("POST /api/axon/retrain", status, secs, answer)
                press = {"t": round(time.monotonic() - t0, 1), "http": status, "ms": round(secs * 1000, 1)}
                if status == 200:
                    a = json.loads(answer)
                    press.update(status=a["status"], run_id=a["run_id"])
                else:
                    press["body"] = answer[:200].decode(errors="replace")
                presses.append(press)
                say(f"press {len(presses)} at {press['t']:.0f} s: HTTP {status} {press.get('status', '')} run {press.get('run_id')}")
                # follow the run until it ends (or the next press is due)
                polls = 0
                while press.get("run_id") and not stop.is_set() and time.monotonic() < min(next_press, end + 120) and polls < 500:
                    polls += 1
                    if stop.wait(2.0):
                        break
                    try:
                        status, _, answer, secs = client.request("GET", f"/api/axon/runs/{press['run_id']}/", None, bearer(client))
                    except Exception as exc:  # noqa: BLE001
                        rec.add("GET /api/axon/runs/<id>/", type(exc).__name__, None)
                        client.close()
                        client = Http(web.port, args.timeout)
                        continue
                    rec.add("GET /api/axon/runs/<id>/", status, secs, answer)
                    if status == 200:
                        run = json.loads(answer)
                        if run["status"] not in ("queued", "running"):
                            press.update(run_status=run["status"], model_version=run.get("model_version"),
                                         finished_after_s=round(time.monotonic() - t0 - press["t"], 1))
                            say(f"  run {press['run_id']} {run['status']} (v{run.get('model_version')}) "
                                f"{press['finished_after_s']:.0f} s after the press: {run.get('message', '')[:120]}")
                            break
        finally:
            client.close()

    def reader() -> None:
        client = Http(web.port, args.timeout)
        n = 0
        try:
            while not stop.is_set() and time.monotonic() < end and n < 100_000:
                n += 1
                if stop.wait(args.read_every):
                    break
                try:
                    status, _, answer, secs = client.request("GET", "/api/telemetry/summary/", None, bearer(client))
                except Exception as exc:  # noqa: BLE001
                    rec.add("GET /api/telemetry/summary/", type(exc).__name__, None)
                    client.close()
                    client = Http(web.port, args.timeout)
                    continue
                rec.add("GET /api/telemetry/summary/", status, secs, answer)
        finally:
            client.close()

    sampler = RssSampler(web, clusters, t0, args.sample_every, stop)
    sampler.start()
    half = args.rate / 2
    threads = [threading.Thread(target=agent, args=("single", half / args.single_agents, 1, i), daemon=True, name=f"single{i}")
               for i in range(args.single_agents)]
    threads += [threading.Thread(target=agent, args=("batch", half / args.batch_agents, args.batch_size, args.single_agents + i),
                                 daemon=True, name=f"batch{i}") for i in range(args.batch_agents)]
    threads += [threading.Thread(target=admin, daemon=True, name="admin"), threading.Thread(target=reader, daemon=True, name="reader")]
    for t in threads:
        t.start()
    minute = 0
    try:
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.1, end - time.monotonic())))
            m = int((time.monotonic() - t0) // 60)
            if m > minute:
                minute = m
                with rec.lock:
                    total = sum(sum(c.values()) for c in rec.codes.values())
                    bad = sum(n for c in rec.codes.values() for code, n in c.items() if not (isinstance(code, int) and code < 500))
                say(f"minute {m}: {len(sent):,} snapshots generated, {len(acked):,} acknowledged, {total:,} requests, "
                    f"{bad} 5xx/errors; load average {loadavg()}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=args.timeout + 130)
    soak_seconds = time.monotonic() - t0
    sampler.stop.set()
    sampler.join(timeout=10)
    say(f"load stopped after {soak_seconds:.0f} s; waiting for a run in flight (at most 180 s)")
    settle_deadline = time.monotonic() + 180
    db = DB(args.database)
    try:
        while time.monotonic() < settle_deadline and db.runs_in_flight():
            time.sleep(2)
        return report(args, rec, sampler, db, sent, acked, item_errors, presses, versions_seen, lag, soak_seconds)
    finally:
        db.close()


class DB:
    def __init__(self, url: str):
        import psycopg2

        p = urlparse(url)
        self.conn = psycopg2.connect(host=p.hostname, port=p.port or 5432, dbname=p.path.lstrip("/"),
                                     user=p.username or None, password=p.password or None, connect_timeout=10)
        self.conn.autocommit = True
        with self.conn.cursor() as c:
            c.execute("SET TIME ZONE 'UTC'")

    def q(self, sql: str, params=()) -> list[tuple]:
        with self.conn.cursor() as c:
            c.execute(sql, params)
            return c.fetchall()

    def runs_in_flight(self) -> int:
        return self.q("SELECT count(*) FROM axon_trainingrun WHERE status IN ('queued', 'running')")[0][0]

    def close(self) -> None:
        self.conn.close()


def report(args, rec: Recorder, sampler: RssSampler, db: DB, sent, acked, item_errors, presses, versions_seen, lag,
           soak_seconds: float) -> dict:
    stored = {}
    for host, ts, count, n_records in db.q(
        "SELECT e.hostname, to_char(s.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), s.process_count, "
        "       coalesce(r.n, 0) "
        "FROM telemetry_snapshot s JOIN telemetry_endpoint e ON e.id = s.endpoint_id "
        "LEFT JOIN (SELECT snapshot_id, count(*) AS n FROM telemetry_processrecord GROUP BY snapshot_id) r ON r.snapshot_id = s.id"
    ):
        stored[(host, ts)] = (count, n_records)
    missing = [k for k in sent if k not in stored]
    short = [k for k in sent if k in stored and (stored[k][0] != sent[k] or stored[k][1] != sent[k])]
    acked_missing = [k for k in acked if k not in stored]
    runs = db.q("SELECT r.id, r.status, r.trigger, r.created_at, r.started_at, r.finished_at, v.version, left(r.message, 160) "
                "FROM axon_trainingrun r LEFT JOIN axon_modelversion v ON v.id = r.model_version_id ORDER BY r.id")
    versions = db.q("SELECT version, status, is_active, activated_at, records, training_seconds FROM axon_modelversion ORDER BY version")
    total_requests = sum(sum(c.values()) for c in rec.codes.values())
    n5xx = sum(n for c in rec.codes.values() for code, n in c.items() if isinstance(code, int) and code >= 500)
    exc = sum(n for c in rec.codes.values() for code, n in c.items() if isinstance(code, str))
    other = Counter()
    for c in rec.codes.values():
        for code, n in c.items():
            if isinstance(code, int) and code < 500 and not 200 <= code < 300:
                other[code] += n

    lines = ["", "=" * 100, f"SOAK RESULT: {soak_seconds / 60:.1f} min, target rate {args.rate:g} snapshots/s "
             f"({len(sent) / soak_seconds:.1f} achieved), {args.processes} processes/snapshot, gunicorn -w {args.workers} "
             f"--threads {args.threads}, {args.qclusters} qcluster, press every {args.press_every:g} s",
             f"load average at the end: {loadavg()} ({os.cpu_count()} CPUs)",
             f"requests sent: {total_requests:,}; 5xx: {n5xx}; client errors (timeout/reset): {exc}; "
             f"other non-2xx: {dict(other) or 'none'}"]
    if lag:
        lines.append(f"  agents fell behind schedule (rescheduled) {dict(lag)} times")
    lines.append(f"snapshots: sent {len(sent):,}, acknowledged {len(acked):,}, stored {len(sent) - len(missing):,}; "
                 f"LOST (sent, not stored) {len(missing)}; acknowledged but not stored {len(acked_missing)}; "
                 f"stored with a wrong process count {len(short)}; batch item errors {len(item_errors)}")
    for k in (missing[:5] + short[:5]):
        lines.append(f"  e.g. {k}: sent {sent[k]} processes, stored {stored.get(k)}")
    lines.append(f"records: sent {sum(sent.values()):,}")
    lines.append("")
    lines.append(f"{'endpoint':<40} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  codes")
    for ep in sorted(rec.codes):
        lat = rec.lat.get(ep, [])
        lines.append(f"{ep:<40} {sum(rec.codes[ep].values()):>8} {ingest.percentile(lat, 50):8.1f} {ingest.percentile(lat, 95):8.1f} "
                     f"{ingest.percentile(lat, 99):8.1f} {max(lat, default=float('nan')):8.1f}  {dict(rec.codes[ep])}")
    for s in rec.samples_5xx + rec.exceptions:
        lines.append(f"  ! {s}")
    for s in item_errors[:3]:
        lines.append(f"  item error: {s}")
    lines.append("")
    status_count = Counter(r[1] for r in runs)
    lines.append(f"panic presses: {len(presses)} ({Counter(p.get('status', p['http']) for p in presses)})")
    for p in presses:
        lines.append(f"  {p}")
    lines.append(f"training runs: {dict(status_count)} (succeeded {status_count.get('succeeded', 0)}, "
                 f"failed {status_count.get('failed', 0) + status_count.get('timed_out', 0)})")
    for r in runs:
        dur = (r[5] - r[4]).total_seconds() if r[4] and r[5] else None
        lines.append(f"  run {r[0]:3d} {r[1]:<9} {r[2]:<9} v{r[6]} "
                     f"{'' if dur is None else f'{dur:5.1f} s'}  {r[7] or ''}")
    activated = [v for v in versions if v[3] is not None]
    lines.append(f"model versions: {len(versions)}, activated {len(activated)}; active now "
                 f"{[v[0] for v in versions if v[2]]}")
    for v in versions:
        lines.append(f"  v{v[0]:<3} {v[1]:<8} activated {v[3]:%H:%M:%S}" if v[3] else f"  v{v[0]:<3} {v[1]:<8} never activated")
    lines.append("model_version in ingestion responses, per minute: " +
                 "; ".join(f"{m}: {dict(c)}" for m, c in sorted(versions_seen.items())))
    lines.append("")
    lines.extend(sampler.table(soak_seconds / 60))
    lines.append("=" * 100)
    print("\n".join(lines), flush=True)
    ok = n5xx == 0 and exc == 0 and not missing and not short and not acked_missing
    return {
        "ok": ok, "soak_seconds": soak_seconds, "requests": total_requests, "5xx": n5xx, "client_errors": exc,
        "other_non_2xx": dict(other), "codes": {ep: dict(c) for ep, c in rec.codes.items()},
        "latency_ms": {ep: {"n": len(v), "p50": ingest.percentile(v, 50), "p95": ingest.percentile(v, 95),
                            "p99": ingest.percentile(v, 99), "max": max(v, default=None)} for ep, v in rec.lat.items()},
        "snapshots_sent": len(sent), "snapshots_acked": len(acked), "lost": len(missing), "acked_lost": len(acked_missing),
        "short": len(short), "item_errors": item_errors, "samples_5xx": rec.samples_5xx, "exceptions": rec.exceptions,
        "presses": presses, "runs": [[str(x) for x in r] for r in runs], "run_status": dict(status_count),
        "versions": [[str(x) for x in v] for v in versions], "rss": sampler.summary(),
        "versions_seen": {m: {str(k): n for k, n in c.items()} for m, c in versions_seen.items()},
    }


if __name__ == "__main__":
    sys.exit(main())

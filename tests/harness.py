"""Real processes and clients for the tests and the benchmarks: gunicorn, a django-q2 cluster, a keep-alive HTTP
client, the database, batched ingestion over HTTP, and a TCP proxy that can cut connections like a restart.

Standard library only at import time (psutil and psycopg2 are imported where used), so that benchmarks/ can use it
from outside pytest: they put the repository on sys.path and `from tests.harness import ...`. It lives with the
tests, not in voltaxe/, because the product never runs it.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SINGLE_PATH = "/api/telemetry/snapshots/"
BATCH_PATH = "/api/telemetry/snapshots/batch/"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- HTTP -----------------------------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, seconds: float):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        return json.loads(self.body or b"{}")

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


class Http:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port; sends again once if the server closed it while idle."""

    def __init__(self, port: int, timeout: float = 60.0, headers: dict | None = None):
        self.port, self.headers = port, {"Content-Type": "application/json", **(headers or {})}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    @property
    def local_port(self) -> int | None:
        return self.conn.sock.getsockname()[1] if self.conn.sock is not None else None

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> Answer:
        """`body`: bytes as they are, anything else as JSON."""
        data = body if body is None or isinstance(body, bytes) else encode(body)
        for attempt in range(2):
            idle = self.conn.sock is not None  # a kept-alive connection the server may have closed meanwhile
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers={**self.headers, **(headers or {})})
                response = self.conn.getresponse()
                answer = Answer(response.status, response.getheaders(), response.read(), time.perf_counter() - started)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt or not idle:  # a fresh connection that fails is an answer, not a stale socket
                    raise
                continue
            if answer.header("Connection").lower() == "close":
                self.conn.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def jwt_headers(port: int, username: str, password: str) -> dict:
    client = Http(port, 30)
    try:
        answer = client.request("POST", "/api/auth/token/", {"username": username, "password": password})
    finally:
        client.close()
    if answer.status != 200:
        raise RuntimeError(f"token for {username} answered {answer.status}: {answer.body[:200]!r}")
    return {"Authorization": f"Bearer {answer.json()['access']}"}


def session_headers(port: int, username: str, password: str) -> dict:
    """Log in through the /login/ form, as a browser does; the Cookie header to send afterwards."""
    import re
    from urllib.parse import urlencode

    client, cookies = Http(port, 30), {}

    def keep(answer: Answer) -> None:
        for name, value in answer.headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key.strip()] = rest.split(";", 1)[0]

    try:
        form = client.request("GET", "/login/")
        keep(form)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body).group(1).decode()
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
        answer = client.request("POST", "/login/", body, {
            "Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://127.0.0.1:{port}/login/",
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        keep(answer)
    finally:
        client.close()
    if answer.status != 302 or "sessionid" not in cookies:
        raise RuntimeError(f"POST /login/ answered {answer.status} without a session: {answer.body[:300]!r}")
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def ingest_batches(port: int, key: str, bodies: list[bytes], *, clients: int = 2, duration: float = 600,
                   timeout: float = 120) -> dict:
    """POST encoded batches from `clients` keep-alive threads until they run out or `duration` passes."""
    lock, queue, failures = threading.Lock(), list(reversed(bodies)), []
    totals = {"records": 0, "snapshots": 0, "errors": 0, "batches": 0}
    latencies: list[float] = []
    deadline = time.monotonic() + duration

    def work() -> None:
        client = Http(port, timeout, {"Authorization": f"Api-Key {key}"})
        try:
            while time.monotonic() < deadline:
                with lock:
                    if not queue or failures:
                        return
                    body = queue.pop()
                answer = client.request("POST", BATCH_PATH, body)
                if answer.status != 201:
                    raise RuntimeError(f"batch POST answered {answer.status}: {answer.body[:300]!r}")
                results = answer.json()["results"]
                with lock:
                    totals["records"] += sum(r.get("processes", 0) for r in results if "error" not in r)
                    totals["errors"] += sum(1 for r in results if "error" in r)
                    totals["snapshots"] += sum(1 for r in results if "error" not in r)
                    totals["batches"] += 1
                    latencies.append(answer.seconds)
        except Exception as exc:  # noqa: BLE001 - raised below, in the caller's thread
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
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError("an ingestion client failed: " + failures[0])
    return {**totals, "seconds": seconds, "records_per_s": totals["records"] / seconds if seconds else 0.0,
            "batch_p50_ms": percentile(latencies, 50) * 1000}


# --- processes ---------------------------------------------------------------------------------------------


class Process:
    """A child in its own session (the whole group can be stopped) writing to a log file: a pipe nobody reads
    would fill up and stall it."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.argv, self.env, self.log = argv, env, Path(log)
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """kill -9 the whole group (for django-q2: sentinel, workers, monitor)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, grace: float = 10) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left of the group


class Gunicorn(Process):
    """gunicorn voltaxe.wsgi on a free port; start() (or `with`) returns once /healthz answers 200.
    The log goes to `log`, or to a temporary file."""

    def __init__(self, env: dict, log: Path | None = None, *, workers: int = 3, threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = log or Path(tempfile.mkdtemp(prefix="voltaxe-gunicorn-")) / "gunicorn.log"
        env = {"ALLOWED_HOSTS": "127.0.0.1", "MODEL_REFRESH_SECONDS": "0.5", **env}
        super().__init__([PYTHON, "-m", "gunicorn", "voltaxe.wsgi", "-w", str(workers), "--threads", str(threads),
                          "-b", f"127.0.0.1:{self.port}", "--timeout", "120", "--keep-alive", "30",
                          "--log-level", "warning"], env, log)

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is not None:
            print(f"\n--- gunicorn log ({self.log}) ---\n{self.tail(40)}")  # pytest shows it with the failure

    def start(self):
        super().start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                client = Http(self.port, 5)
                try:
                    if client.request("GET", "/healthz").status == 200:
                        return self
                finally:
                    client.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz within 60 s:\n{self.tail()}")

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
        """One request on a fresh connection: (status, JSON body, or {"raw": ...} when it is not JSON)."""
        client = Http(self.port, 30)
        try:
            answer = client.request(method, path, body, headers)
        finally:
            client.close()
        try:
            return answer.status, answer.json()
        except ValueError:
            return answer.status, {"raw": answer.body.decode(errors="replace")[:300]}

    def workers(self) -> list:
        import psutil

        try:
            return psutil.Process(self.pid).children()
        except psutil.Error:
            return []


class QCluster(Process):
    """`manage.py qcluster`: the django-q2 worker."""

    def __init__(self, env: dict, log: Path):
        super().__init__([PYTHON, str(REPO / "manage.py"), "qcluster"], env, log)

    def wait_ready(self, seconds: float = 60):
        """Until the cluster says it is running; one that dies on start raises with its output."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.tail(40)}")
            if "running." in self.output():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start within {seconds} s:\n{self.tail(40)}")


def stop_all(processes) -> None:
    """SIGTERM every group at once (a cluster takes a while to say goodbye), then stop each."""
    for p in processes:
        if p is not None and p.alive():
            p.signal(signal.SIGTERM)
    for p in processes:
        if p is not None:
            p.stop()


def manage(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in a subprocess; raises with its output if it fails."""
    result = subprocess.run([PYTHON, str(REPO / "manage.py"), *args], cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args[:3])} exited {result.returncode}:\n{result.stdout[-2000:]}"
                           f"{result.stderr[-3000:]}")
    return result


# --- the stack the benchmarks start -------------------------------------------------------------------------


def server_env(*, database: str, model_dir: Path, tmp: Path, redis: str = "", extra: dict | None = None) -> dict:
    """Production-shaped settings for manage.py, gunicorn and qcluster: DEBUG off, one database, one model store.
    `database`: a postgres:// URL or a SQLite file path."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH", "DEBUG", "REDIS_URL"}}
    env.update({"SECRET_KEY": "bench-" + secrets.token_urlsafe(40), "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
                "MODEL_STORE_DIR": str(model_dir), "QSTATS_CACHE_DIR": str(tmp / "qstats"), "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1", "Q_WORKERS": "1", "DJANGO_SETTINGS_MODULE": "voltaxe.settings",
                "PYTHONPATH": str(REPO)})
    env["DATABASE_URL" if database.startswith("postgres") else "SQLITE_PATH"] = database
    if redis:
        env["REDIS_URL"] = redis
    env.update(extra or {})
    return env


def check_local(url: str, *, names: tuple[str, ...] = ("bench", "soak")) -> None:
    """Benchmarks empty what they are pointed at: only this machine's PostgreSQL databases named for it."""
    parsed = urlparse(url)
    if parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise SystemExit(f"{url}: benchmarks only talk to 127.0.0.1")
    name = parsed.path.lstrip("/")
    if parsed.scheme.startswith("postgres") and not any(n in name for n in names):
        raise SystemExit(f"refusing to empty database {name!r}: its name lacks one of {names}")
    if parsed.scheme == "redis" and int(name or 0) not in range(10, 15):
        raise SystemExit(f"{url}: use a Redis database from 10 to 14 (15 belongs to CI, lower ones to the tests)")


def pg_create(url: str) -> None:
    """CREATE DATABASE when it does not exist yet."""
    import psycopg2

    p = urlparse(url)
    auth = {"host": p.hostname, "port": p.port or 5432, "user": p.username or None, "password": p.password or None,
            "connect_timeout": 5}
    try:
        psycopg2.connect(dbname=p.path.lstrip("/"), **auth).close()
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        conn = psycopg2.connect(dbname="postgres", **auth)
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{p.path.lstrip("/")}"')
        conn.close()


FLUSH_CODE = """
from django.apps import apps
from django.core.management.color import no_style
from django.db import connection
models = [m for label in ('telemetry', 'axon', 'audit', 'django_q') for m in apps.get_app_config(label).get_models()]
sql = connection.ops.sql_flush(no_style(), [m._meta.db_table for m in models], reset_sequences=True, allow_cascade=True)
connection.ops.execute_sql_flush(sql)
connection.cursor().execute('VACUUM' if connection.vendor == 'sqlite' else 'VACUUM ANALYZE')
"""


def db_fresh(env: dict) -> None:
    """Create (PostgreSQL), migrate and empty the product's and the queue's tables; migrate again so that the
    app's post_migrate puts its schedules back."""
    if env.get("DATABASE_URL"):
        pg_create(env["DATABASE_URL"])
    manage(env, "migrate", "--no-input")
    manage(env, "shell", "-c", FLUSH_CODE, timeout=1800)
    manage(env, "migrate", "--no-input")


def redis_flush(url: str) -> None:
    import redis

    check_local(url)
    redis.Redis.from_url(url, socket_timeout=5).flushdb()


USERS_CODE = """
import json, os
from django.contrib.auth.models import Group, User
for u in json.loads(os.environ['BENCH_USERS']):
    user, _ = User.objects.get_or_create(username=u['username'])
    user.email = u.get('email', '')
    user.set_password(u['password'])
    user.save()
    user.groups.set([Group.objects.get(name=u['group'])])
"""


def users_create(env: dict, users: list[dict]) -> None:
    """[{"username", "password", "group", "email"?}, ...], created or reset."""
    manage({**env, "BENCH_USERS": json.dumps(users)}, "shell", "-c", USERS_CODE)


def agent_create(env: dict, name: str, *, hosts: list[str] | tuple = (), any_host: bool = False) -> str:
    """A new agent key (printed once by the command), bound to `hosts` (default: the host called NAME), or a relay."""
    scope = ["--any-host"] if any_host else [arg for host in hosts for arg in ("--host", host)]
    return manage(env, "create_agent", name, *scope).stdout.strip().splitlines()[-1]


def redis_or_skip(url: str) -> None:
    """Empty the tests' Redis database; skip without one locally, fail on CI (which starts one)."""
    import pytest
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.flushdb()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url}")


def wait_for(predicate, seconds: float, what: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")


# --- faults --------------------------------------------------------------------------------------------------


class CuttableProxy:
    """Forwards 127.0.0.1:port to a target; `cut()` drops every connection and refuses new ones, like a restart."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.server.close()

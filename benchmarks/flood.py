#!/usr/bin/env python3
"""One endpoint's key floods its own host with new names: how long the page, the poll, the preview, the
alerts and a press then take, and how large a run's answer is.

    .venv/bin/python benchmarks/flood.py [--database postgres://127.0.0.1:5432/voltaxe_bench] [--repo DIR]
                                         [--snapshots 31] [--names 5000]

Empties and migrates the database (its name must contain "bench"), loads the demo fleet and trains its
first model, creates an agent key bound to one new host and a security admin, starts gunicorn (one worker)
and a django-q2 worker from --repo (this checkout by default; point it at an older checkout, e.g.
`git worktree add /tmp/before HEAD~5`, to compare). The key then posts --snapshots snapshots of --names
processes each, every name new, as fast as the server takes them (what an intruder holding one endpoint's
key can do in under a minute). Then, as the admin, each read three times (the median is printed): the Live
page, its 5-second poll, the preview's first page, the alerts API and page; a default press (the answer's
time), its run to the end, and the size of the run's answer. Last, the web worker's RSS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import harness  # noqa: E402
from tests.harness import (  # noqa: E402
    Gunicorn,
    Http,
    QCluster,
    check_local,
    db_fresh,
    encode,
    jwt_headers,
    manage,
    say,
    server_env,
    session_headers,
    stop_all,
    users_create,
)

HOST = "bench-flood-host"
ADMIN = {"username": "bench-admin", "password": "bench-admin-password-1", "group": "Security Admin"}


def flood(rng_seed: int, when: datetime, names: int, n: int) -> bytes:
    """One snapshot of `names` processes never seen before (their names differ from every other snapshot's)."""
    processes = [{"name": f"x{rng_seed}-{n}-{i}", "pid": 2000 + i, "ppid": 1, "exe": f"/tmp/.cache/x{rng_seed}-{n}-{i}",
                  "username": "www-data", "cmdline": f"/tmp/.cache/x{rng_seed}-{n}-{i} -q", "cpu_percent": 1.0,
                  "memory_rss": 4 * 2**20} for i in range(names)]
    return encode({"hostname": HOST, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "os": "linux",
                   "processes": processes})


def timed(client: Http, method: str, path: str, headers: dict, body=None, times: int = 3) -> tuple[float, int, int]:
    """(median seconds, last status, last body size)."""
    seconds, answer = [], None
    for _ in range(times):
        answer = client.request(method, path, body, headers)
        seconds.append(answer.seconds)
    assert answer is not None
    return statistics.median(seconds), answer.status, len(answer.body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="postgres://127.0.0.1:5432/voltaxe_bench")
    parser.add_argument("--repo", default=str(harness.REPO))
    parser.add_argument("--snapshots", type=int, default=31)
    parser.add_argument("--names", type=int, default=5000)
    parser.add_argument("--times", type=int, default=3, help="each read this many times (the median is printed)")
    args = parser.parse_args(argv)
    check_local(args.database)
    harness.REPO = Path(args.repo).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-flood-"))
    env = server_env(database=args.database, model_dir=tmp / "models", tmp=tmp,
                     extra={"TOKEN_RATE": "1000/m", "AUTH_ADDRESS_RATE": "1000/m", "RETRAIN_USER_RATE": "100/m"})
    say(f"{harness.REPO}: load average {os.getloadavg()[0]:.1f}; preparing {args.database}")
    db_fresh(env)
    manage(env, "demo_data", timeout=1800)
    users_create(env, [ADMIN])
    key = manage(env, "create_agent", "bench-flood-agent", "--host", HOST).stdout.strip()
    web = Gunicorn(env, tmp / "gunicorn.log", workers=1).start()
    worker = QCluster({**env, "LOG_LEVEL": "INFO"}, tmp / "qcluster.log").start()  # INFO: it says "running."
    try:
        worker.wait_ready()
        agent = Http(web.port, 300, {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"})
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=args.snapshots + 5)
        began = time.monotonic()
        for n in range(args.snapshots):
            answer = agent.request("POST", "/api/telemetry/snapshots/", flood(7, start + timedelta(seconds=n), args.names, n))
            if answer.status != 201:
                raise SystemExit(f"snapshot {n} answered {answer.status}: {answer.body[:300]!r}")
        say(f"flood: {args.snapshots} snapshots x {args.names} new names from {HOST} in {time.monotonic() - began:.1f} s")
        admin = Http(web.port, 600)
        api = {**jwt_headers(web.port, ADMIN["username"], ADMIN["password"]), "Content-Type": "application/json"}
        page = session_headers(web.port, ADMIN["username"], ADMIN["password"])
        say(f"load average {os.getloadavg()[0]:.1f} before the reads")
        for label, method, path, headers in (
                ("Live page", "GET", "/live-telemetry/", page),
                ("5-second poll", "GET", "/live-telemetry/data/", page),
                ("preview, first page", "GET", "/api/axon/retrain/preview/?limit=50", api),
                ("alerts API", "GET", "/api/axon/alerts/", api),
                ("alerts page", "GET", "/alerts/", page)):
            seconds, status, size = timed(admin, method, path, headers, times=args.times)
            say(f"{label:22} {seconds * 1000:9.0f} ms  ({status}, {size / 1024:.0f} KiB)")
        preview = admin.request("GET", "/api/axon/retrain/preview/?limit=1", None, api).json()
        say(f"preview: total {preview.get('total')}, floods {len(preview.get('floods', []))}")
        answer = admin.request("POST", "/api/axon/retrain", {"reason": "flood benchmark"}, api)
        say(f"default press answered {answer.status} in {answer.seconds * 1000:.0f} ms: {answer.body[:160]!r}")
        if answer.status == 200:
            run_url, deadline, run = answer.json()["status_url"], time.monotonic() + 900, {}
            while time.monotonic() < deadline:
                run = admin.request("GET", run_url, None, api).json()
                if run.get("status") not in ("queued", "running"):
                    break
                time.sleep(0.5)
            body = admin.request("GET", run_url, None, api)
            say(f"run {run.get('status')} in {run.get('duration_seconds')} s, approved {len(run.get('approved') or [])}; "
                f"GET {run_url}: {len(body.body) / 1024:.0f} KiB")
        say("web worker: " + ", ".join(f"RSS {w.memory_info().rss / 2**20:.0f} MiB" for w in web.workers()))
    finally:
        stop_all([web, worker])
        say(f"logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Memory of one gunicorn worker under oversized bodies from an agent, and under the largest valid ones.

    .venv/bin/python benchmarks/body_limits.py [--database postgres://127.0.0.1:5432/voltaxe_bench] [--repo DIR]

Empties and migrates the database (its name must contain "bench"), creates an agent key bound to one host,
and starts gunicorn with one worker from --repo (this checkout by default; point it at an older checkout,
e.g. `git worktree add /tmp/before HEAD`, to compare; its ./gunicorn.conf.py is read if it has one).
Then prints the worker's pid and RSS: at start, after 20 bodies of 32 MiB `[{},{},…]` (what DATA_UPLOAD_MAX_MEMORY_SIZE
used to let through) spread over the three ingestion paths, after 20 of the largest valid snapshots and after
20 of the largest valid batches (the sizes the limits in voltaxe/settings.py are derived from; `--sizes` prints
them and stops).
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import harness  # noqa: E402
from tests.harness import Gunicorn, check_local, db_fresh, manage, say, server_env  # noqa: E402

HOST = "bench-body-host"
OVERSIZED = b"[" + b",".join([b"{}"] * (32 * 2**20 // 3)) + b"]"
PATHS = ["/api/telemetry/snapshots/", "/api/telemetry/snapshots/batch/", "/ingest/process-snapshot"]
CHROME_FLAGS = ("--type=renderer --crashpad-handler-pid={p} --enable-crash-reporter=4c1e5b0e-6f1b-4c1d-9d8e-{p:012d},"
                "--change-stack-guard-on-fork=enable --lang=en-US --num-raster-threads=4 --enable-main-frame-before-activation "
                "--renderer-client-id={p} --time-ticks-at-unix-epoch=-1716300000000000 --launch-time-ticks=8123456789 "
                "--shared-files=v8_context_snapshot_data:100 --field-trial-handle=3,i,{p}7781233,1829471234,262144 "
                "--enable-features=" + ",".join(f"Feature{i}Experiment" for i in range(30)) + " --disable-features="
                + ",".join(f"Legacy{i}Path" for i in range(25)) + " --variations-seed-version=20240521-180045.123000")


def process(rng: random.Random, i: int, pid: int) -> dict:
    """A busy machine's mix: most processes are daemons, a quarter browser renderers, one in twenty a JVM."""
    kind = i % 20
    if kind == 0:
        exe = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
        jars = ":".join(f"/opt/app/lib/component-{j}-{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.jar"
                        for j in range(200))
        name, user, cmdline = "java", "app", f"{exe} -Xms1g -Xmx4g -Dspring.profiles.active=prod -cp {jars} com.example.Main"
    elif kind <= 5:
        exe = "/opt/google/chrome/chrome"
        name, user, cmdline = "chrome", "erin", f"{exe} {CHROME_FLAGS.format(p=pid)}"
    else:
        exe = f"/usr/lib/svc/svc-{i % 400}"
        name, user = f"svc-{i % 400}", "root"
        cmdline = f"{exe} --config /etc/svc/svc-{i % 400}.conf --log-level info --pidfile /run/svc-{i % 400}.pid"
    return {"name": name, "pid": pid, "ppid": 1, "exe": exe, "username": user, "cmdline": cmdline,
            "cpu_percent": round(rng.uniform(0, 20), 1), "memory_rss": rng.randint(2**20, 2**31)}


def snapshot(rng: random.Random, when: datetime, processes: int) -> dict:
    return {"hostname": HOST, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "os": "linux",
            "processes": [process(rng, i, 1000 + i) for i in range(processes)]}


def bodies(kind: str, count: int, start: datetime) -> list[bytes]:
    """`count` distinct largest valid bodies: snapshots of 5000 processes, or batches of 100 snapshots of 150."""
    rng = random.Random(kind)
    if kind == "snapshot":
        return [json.dumps(snapshot(rng, start - timedelta(minutes=n), 5000)).encode() for n in range(count)]
    return [json.dumps([snapshot(rng, start - timedelta(minutes=1000 + n * 100 + m), 150) for m in range(100)]).encode()
            for n in range(count)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="postgres://127.0.0.1:5432/voltaxe_bench")
    parser.add_argument("--repo", default=str(harness.REPO))
    parser.add_argument("--count", type=int, default=20, help="bodies of each kind")
    parser.add_argument("--sizes", action="store_true", help="print the largest valid bodies' sizes and stop")
    args = parser.parse_args(argv)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    if args.sizes:
        for kind in ("snapshot", "batch"):
            size = len(bodies(kind, 1, start)[0])
            print(f"largest valid {kind}: {size} bytes ({size / 2**20:.2f} MiB)")
        return 0
    check_local(args.database)
    harness.REPO = Path(args.repo).resolve()  # the harness starts manage.py and gunicorn from here
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-body-limits-"))
    env = server_env(database=args.database, model_dir=tmp / "models", tmp=tmp)
    db_fresh(env)
    key = manage(env, "create_agent", "bench-body-agent", "--host", HOST).stdout.strip()
    snapshots, batches = bodies("snapshot", args.count, start), bodies("batch", args.count, start)
    with Gunicorn(env, tmp / "gunicorn.log", workers=1) as web:
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

        def rss(label: str, answers: list[int] | None = None) -> None:
            said = ", ".join(f"pid {w.pid} RSS {w.memory_info().rss / 2**20:.0f} MiB" for w in web.workers())
            counts: dict[int, int] = {}
            for status in answers or []:
                counts[status] = counts.get(status, 0) + 1
            say(f"{label}: {said}" + (f"  (answers {counts})" if counts else ""))

        def post(path: str, body: bytes) -> int:
            """The status, 0 for none; a fresh connection each time, as the server may close it unread."""
            conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=300)
            try:
                try:
                    conn.request("POST", path, body, headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # answered before the body was read: the answer is there to read
                response = conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                return 0
            finally:
                conn.close()

        say(f"{harness.REPO}: gunicorn -w 1 on {web.url}; agent key bound to {HOST}")
        rss("at start")
        answers = [post(PATHS[i % len(PATHS)], OVERSIZED) for i in range(args.count)]
        rss(f"after {args.count} oversized bodies ({len(OVERSIZED) / 2**20:.0f} MiB each)", answers)
        answers = [post("/api/telemetry/snapshots/", body) for body in snapshots]
        rss(f"after {args.count} largest valid snapshots ({len(snapshots[0]) / 2**20:.1f} MiB each)", answers)
        answers = [post("/api/telemetry/snapshots/batch/", body) for body in batches]
        rss(f"after {args.count} largest valid batches ({len(batches[0]) / 2**20:.1f} MiB each)", answers)
        say(f"gunicorn log: {web.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

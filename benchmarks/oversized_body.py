#!/usr/bin/env python3
"""Memory of one gunicorn worker when unauthenticated clients post oversized JSON to the token refresh endpoint.

    .venv/bin/python benchmarks/oversized_body.py --database postgres://127.0.0.1:5432/voltaxe_bench [--repo DIR]

Migrates the database (its name must contain "bench"), starts `gunicorn voltaxe.wsgi -w 1` from --repo (this
checkout by default; point it at an older export to compare), posts two 30 MiB JSON arrays to
/api/auth/token/refresh/ and prints the answer, its time and the worker's RSS after each. The server is
stopped in `finally`.
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    if "bench" not in args.database.rsplit("/", 1)[-1]:
        parser.error("the database name must contain 'bench': it is migrated")
    repo = args.repo
    env = {**os.environ, "DATABASE_URL": args.database, "SECRET_KEY": "bench-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1",
           "PYTHONPATH": repo, "DJANGO_SETTINGS_MODULE": "voltaxe.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=repo, env=env, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.Popen([gunicorn, "voltaxe.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "120",
                             "--log-level", "warning"], cwd=repo, env=env, start_new_session=True)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.3)
        worker = psutil.Process(proc.pid).children()[0]
        print(f"{repo}: worker RSS at start {worker.memory_info().rss / 2**20:.0f} MiB")
        body = b"[" + b",".join([b"0"] * (15 * 2**20)) + b"]"  # 30 MiB: under DATA_UPLOAD_MAX_MEMORY_SIZE
        for i in range(2):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            started = time.perf_counter()
            try:
                c.request("POST", "/api/auth/token/refresh/", body, {"Content-Type": "application/json"})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered before reading the body, and closed the connection
            try:
                response = c.getresponse()
                answer = f"{response.status} {response.read()[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                answer = f"no answer ({exc!r})"
            print(f"  POST {len(body) / 2**20:.0f} MiB array #{i + 1}: {answer} in {time.perf_counter() - started:.2f} s;"
                  f" worker RSS {worker.memory_info().rss / 2**20:.0f} MiB")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

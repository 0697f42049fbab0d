#!/usr/bin/env python3
"""Training against fleet size: press -> new model active with 20, 200 and 1,000 hosts of 30 days each.

    .venv/bin/python benchmarks/fleet_training.py --database postgres://127.0.0.1:5432/voltaxe_bench_fleet --hosts 20,200,1000

For each fleet size the database (its name must contain "bench": it is emptied) is made again,
migrated, and given the history straight in SQL (generate_series, not the HTTP path, which
`benchmarks/ingest.py` measures): what ingestion would have left in the rollups for hosts sending
a snapshot every --every minutes for --days days, each running --programs programs (a few of them
only in business hours, one at night, a few seen on that host alone), plus one raw snapshot a host
in the last hour, for the comparison with the active model. Then, in a fresh process per size (so
its peak memory is its own), a first model is trained and a second press is timed the way the
worker runs it: press -> new model active, the aggregation, the fit, and the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _django(url: str) -> None:
    os.environ.update({"DATABASE_URL": url, "DEBUG": "1"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voltaxe.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def load(url: str, *, hosts: int, days: int, every: int, programs: int) -> dict:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    per_hour = 60 // every
    # Program p on host e: most run all day; p % 7 == 3 only 09-17 UTC; p == 1 only at 02 for 5 snapshots;
    # the last three are the host's own tools (their name carries the host).
    hour_n = [f"CASE WHEN p = 1 THEN {5 if h == 2 else 0} WHEN p % 7 = 3 AND NOT ({h} BETWEEN 9 AND 17) THEN 0 "
              f"ELSE {per_hour} END" for h in range(24)]
    hour_cpu = [f"({n}) * (1.0 + (p % 5) + CASE WHEN p % 11 = 0 AND {h} = 3 THEN 20 ELSE 0 END)"
                for h, n in enumerate(hour_n)]
    n_total = " + ".join(f"({n})" for n in hour_n)
    cpu_total = " + ".join(hour_cpu)
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_endpoint (hostname, os, first_seen, last_seen, names_only) "
            "SELECT 'bench-' || lpad(g::text, 5, '0'), CASE WHEN g %% 3 = 0 THEN 'windows' ELSE 'linux' END, "
            "%s, %s, false FROM generate_series(1, %s) g", [now - timedelta(days=days), now, hosts])
        cursor.execute(
            "INSERT INTO telemetry_hostday (endpoint_id, day, snapshots, last_at) "
            "SELECT e.id, d::date, %s, LEAST(d + interval '1 day' - interval '1 minute', %s) FROM telemetry_endpoint e, "
            "generate_series(%s::timestamptz, %s::timestamptz, interval '1 day') d",
            [24 * per_hour, now, (now - timedelta(days=days)).date(), now.date()])
        # No parameters below, so % is the modulo operator; every value is an int made here.
        name = f"CASE WHEN p > {programs - 3} THEN 'tool-' || e.id || '-' || p ELSE 'proc-' || p END"
        cursor.execute(
            "INSERT INTO telemetry_processrollup (endpoint_id, day, combo, name_norm, exe_norm, parent_name, username, "
            "args_norm, n, cpu_sum, cpu_sq, mem_sum, mem_sq, "
            + ", ".join(f"n{h:02d}, cpu{h:02d}" for h in range(24)) + ") "
            f"SELECT e.id, h.day, md5(e.id || ':' || p)::uuid, {name}, '/usr/bin/' || {name}, "
            "CASE WHEN p % 4 = 0 THEN 'bash' ELSE 'systemd' END, CASE WHEN p % 6 = 0 THEN 'app' ELSE 'root' END, "
            f"CASE WHEN p % 9 = 0 THEN '--serve --port <n>' ELSE '' END, {n_total}, "
            f"{cpu_total}, ({n_total}) * (1.0 + (p % 5)) ^ 2 + ({n_total}), "
            f"({n_total}) * (50.0 + p), ({n_total}) * (50.0 + p) ^ 2 + 4 * ({n_total}), "
            + ", ".join(f"{n}, {c}" for n, c in zip(hour_n, hour_cpu)) + " "
            f"FROM telemetry_endpoint e JOIN telemetry_hostday h ON h.endpoint_id = e.id, generate_series(1, {programs}) p")
        # One raw snapshot a host in the last hour: what the new model is compared with the active one on.
        cursor.execute(
            "INSERT INTO telemetry_snapshot (endpoint_id, timestamp, received_at, process_count, anomaly_count, digest) "
            "SELECT id, %s, %s, %s, 0, '' FROM telemetry_endpoint", [now - timedelta(minutes=30), now, programs])
        cursor.execute(
            "INSERT INTO telemetry_processrecord (snapshot_id, endpoint_id, observed_at, hour, index, name, name_norm, "
            "parent_name, exe, exe_norm, username, cmdline, script, args_norm, cpu_percent, memory_rss, reasons, status, "
            "flagged) "
            f"SELECT s.id, s.endpoint_id, s.timestamp, extract(hour from s.timestamp), p, {name}, {name}, "
            f"CASE WHEN p % 4 = 0 THEN 'bash' ELSE 'systemd' END, '/usr/bin/' || {name}, '/usr/bin/' || {name}, "
            "CASE WHEN p % 6 = 0 THEN 'app' ELSE 'root' END, '', '', "
            "CASE WHEN p % 9 = 0 THEN '--serve --port <n>' ELSE '' END, 1.0 + (p % 5), ((50 + p) * 1048576)::bigint, "
            "'[]', '', false FROM telemetry_snapshot s JOIN telemetry_endpoint e ON e.id = s.endpoint_id, "
            f"generate_series(1, {programs}) p WHERE p != 1")
        for table in ("telemetry_processrollup", "telemetry_hostday", "telemetry_processrecord", "telemetry_snapshot"):
            cursor.execute(f"ANALYZE {table}")
        cursor.execute("SELECT count(*), sum(n) FROM telemetry_processrollup")
        rows, records = cursor.fetchone()
    return {"hosts": hosts, "days": days, "rollup_rows": rows, "records_summarised": int(records),
            "load_seconds": round(time.monotonic() - t0, 1)}


def press(url: str) -> dict:
    """A first model, then a second press timed as the worker runs it; in this process."""
    _django(url)
    from datetime import timedelta

    from django.utils import timezone

    from audit.actors import Actor
    from axon.models import ModelVersion
    from axon.services.press import retrain_request
    from axon.services.runs import retrain_run
    from axon.services.window import window_aggregate

    def once() -> tuple[float, object]:
        t0 = time.monotonic()
        outcome = retrain_request(actor=Actor(user=None, door="command"), body={}, enqueue=False)
        run = retrain_run(run_id=outcome.run.pk)
        return time.monotonic() - t0, run

    first_seconds, run = once()
    assert run.status == "succeeded", run.message
    t0 = time.monotonic()
    now = timezone.now()
    window, _ = window_aggregate(since=now - timedelta(days=30), until=now)
    aggregate_seconds = time.monotonic() - t0
    seconds, run = once()
    assert run.status == "succeeded", run.message
    version = ModelVersion.objects.get(is_active=True)
    return {"first_seconds": round(first_seconds, 2), "press_to_active_seconds": round(seconds, 2),
            "aggregate_seconds": round(aggregate_seconds, 2), "fit_seconds": version.training_seconds,
            "combos": len(window.combos), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--hosts", default="20,200,1000")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=int, default=1, help="minutes between one host's snapshots")
    parser.add_argument("--programs", type=int, default=70, help="programs a host runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(press(args.database)))
        return 0
    name = args.database.rsplit("/", 1)[-1]
    if "bench" not in name:
        parser.error("the database is emptied: its name must contain 'bench'")
    import psycopg2

    for hosts in [int(h) for h in args.hosts.split(",")]:
        admin = psycopg2.connect(args.database.rsplit("/", 1)[0] + "/postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {name}")
        admin.close()
        env = {**os.environ, "DATABASE_URL": args.database, "DEBUG": "1", "RETENTION_DAYS": str(args.days + 7)}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        loader = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv=['x']; sys.path.insert(0, {str(ROOT)!r}); "
             f"from benchmarks import fleet_training as f; f._django({args.database!r}); import json; "
             f"print(json.dumps(f.load({args.database!r}, hosts={hosts}, days={args.days}, every={args.every}, "
             f"programs={args.programs})))"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        loaded = json.loads(loader.stdout.strip().splitlines()[-1])
        timed = subprocess.run([sys.executable, __file__, "--database", args.database, "--child"], cwd=ROOT, env=env,
                               check=True, capture_output=True, text=True)
        result = {**loaded, **json.loads(timed.stdout.strip().splitlines()[-1])}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

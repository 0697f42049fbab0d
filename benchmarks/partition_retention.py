#!/usr/bin/env python3
"""Retention on PostgreSQL: dropping one day's partition, against deleting the same rows.

    .venv/bin/python benchmarks/partition_retention.py --database postgres://127.0.0.1:5432/voltaxe_bench_part --records 6000000

Creates the database if needed (its name must contain "bench": it is emptied), migrates, loads
--records process records spread evenly over --days days straight into the database (one
snapshot row per 300 records; generate_series, not the HTTP path), then times:
1. `telemetry_prune` cutting off the oldest day: the day's partition is dropped, its snapshots
   deleted in batches;
2. for comparison, a DELETE of the next day's rows (what one table would have to do).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--records", type=int, default=6_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    name = args.database.rsplit("/", 1)[-1]
    if "bench" not in name:
        parser.error("the database is emptied: its name must contain 'bench'")
    import psycopg2

    admin = psycopg2.connect(args.database.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {name}")
    env = {**os.environ, "DATABASE_URL": args.database, "DEBUG": "1", "RETENTION_DAYS": str(args.days + 7)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voltaxe.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from datetime import datetime, timedelta

    from django.db import connection
    from django.utils import timezone

    from telemetry.partitions import partition_days, partitions_ensure
    from telemetry.retention import telemetry_prune

    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=args.days)
    partitions_ensure(first=start.date(), last=now.date())
    snapshots = args.records // 300
    step = (now - start) / snapshots
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO telemetry_endpoint (hostname, os, first_seen, last_seen, names_only) "
                       "VALUES ('bench-host', 'linux', %s, %s, false) RETURNING id", [start, now])
        endpoint = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO telemetry_snapshot (endpoint_id, timestamp, received_at, process_count, anomaly_count, model_number, "
            "digest) "
            "SELECT %s, %s + g * %s, %s, 300, 0, 1, '' FROM generate_series(0, %s - 1) g",
            [endpoint, start, step, now, snapshots])
        cursor.execute(
            "INSERT INTO telemetry_processrecord (snapshot_id, endpoint_id, observed_at, hour, index, name, name_norm, "
            "parent_name, exe, exe_norm, username, cmdline, reasons, status, flagged) "
            "SELECT s.id, s.endpoint_id, s.timestamp, extract(hour from s.timestamp), i, 'proc-' || (i % 120), "
            "'proc-' || (i % 120), 'systemd', '/usr/bin/x', '/usr/bin/x', 'root', '', '[]', '', false "
            "FROM telemetry_snapshot s, generate_series(0, 299) i")
        cursor.execute("ANALYZE telemetry_processrecord")
    print(f"loaded {snapshots * 300:,} records over {args.days} days in {time.monotonic() - t0:.0f} s; "
          f"{len(partition_days())} daily partitions")
    first_day = partition_days()[0]
    cutoff = datetime.combine(first_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    from telemetry.partitions import partitions_drop_before

    t0 = time.monotonic()
    partitions_drop_before(cutoff)
    print(f"dropping the day's partition alone: {(time.monotonic() - t0) * 1000:.1f} ms")
    t0 = time.monotonic()
    removed = telemetry_prune(older_than=cutoff)
    print(f"retention of one day by partition: {time.monotonic() - t0:.3f} s ({removed} snapshots; "
          f"{len(partition_days())} partitions left)")
    next_day = partition_days()[0]
    with connection.cursor() as cursor:
        t0 = time.monotonic()
        cursor.execute(f"DELETE FROM telemetry_processrecord_p{next_day:%Y%m%d}")
        print(f"the same day deleted row by row: {time.monotonic() - t0:.3f} s ({cursor.rowcount:,} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

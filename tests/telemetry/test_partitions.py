"""PostgreSQL: process records live in daily partitions; retention drops whole days; the migration keeps every row."""
import subprocess
import sys
from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from telemetry.models import ProcessRecord, Snapshot
from telemetry.partitions import DEFAULT, partition_days, partitioned, partitions_ensure
from telemetry.retention import telemetry_prune
from tests.conftest import REPO
from tests.payloads import rich

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's; SQLite keeps one table and deletes in batches")


def _post(agent_client, hostname, when):
    body = rich(hostname)
    body["timestamp"] = when.isoformat()
    assert agent_client.post("/api/telemetry/snapshots/", body, format="json").status_code == 201


def _rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)  # retention runs on committed rows, in its own transactions
def test_retention_drops_whole_days_and_deletes_the_rest_in_batches(agent_client):
    assert partitioned()
    now = timezone.now()
    today = now.date()
    partitions_ensure(first=today - timedelta(days=12), last=today)
    for days in (10, 9, 6):
        _post(agent_client, "test-agent", now - timedelta(days=days))
    _post(agent_client, "test-agent", now - timedelta(days=40))  # older than any partition: the default one
    _post(agent_client, "test-agent", now - timedelta(hours=1))
    assert _rows_in(DEFAULT) == 3
    cutoff = now - timedelta(days=5)
    assert telemetry_prune(older_than=cutoff) == 4
    assert all(day >= cutoff.date() for day in partition_days())
    assert today - timedelta(days=4) in partition_days() and today in partition_days()
    assert _rows_in(DEFAULT) == 0
    assert Snapshot.objects.count() == 1
    assert ProcessRecord.objects.count() == 3 and not ProcessRecord.objects.filter(observed_at__lt=cutoff).exists()


def test_the_retention_job_creates_the_coming_days(settings):
    from telemetry.tasks import retention_task

    settings.RETENTION_DAYS = 0
    assert retention_task() == "retention is off"
    today = timezone.now().date()
    assert {today + timedelta(days=d) for d in range(8)} <= set(partition_days())


@pytest.mark.slow
def test_migrating_an_existing_database_keeps_every_row(subprocess_env):
    """A database made before partitioning, with telemetry in it, migrated forward."""
    name = f"voltaxe_partition_{abs(hash(str(REPO))) % 10**6}"
    db = connection.settings_dict
    admin = psycopg2.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or None,
                             dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    url = f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    env = {**subprocess_env, "DATABASE_URL": url}

    def manage(*args):
        result = subprocess.run([sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr

    try:
        manage("migrate", "django_q", "-v0")  # the schedules that every migrate keeps in step live there
        manage("migrate", "telemetry", "0005", "-v0")
        old = psycopg2.connect(url)
        with old, old.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_partitioned_table")
            assert cursor.fetchone() is None
            cursor.execute("INSERT INTO telemetry_endpoint (hostname, os, first_seen, last_seen, names_only) "
                           "VALUES ('old-host', 'linux', now(), now(), false) RETURNING id")
            endpoint = cursor.fetchone()[0]
            for days in range(5):
                cursor.execute(
                    "INSERT INTO telemetry_snapshot (endpoint_id, timestamp, received_at, process_count, anomaly_count, "
                    "scored, digest) VALUES (%s, %s, %s, 2, 0, false, '') RETURNING id",
                    [endpoint, timezone.now() - timedelta(days=days), timezone.now()])
                snapshot = cursor.fetchone()[0]
                for index in range(2):
                    cursor.execute(
                        "INSERT INTO telemetry_processrecord (snapshot_id, endpoint_id, observed_at, hour, index, name, "
                        "name_norm, parent_name, exe, exe_norm, username, cmdline, reasons, status) "
                        "SELECT %s, %s, timestamp, 0, %s, 'bash', 'bash', '', '', '', '', '', '[]', '' "
                        "FROM telemetry_snapshot WHERE id = %s", [snapshot, endpoint, index, snapshot])
            cursor.execute("SELECT array_agg(id ORDER BY id) FROM telemetry_processrecord")
            ids = cursor.fetchone()[0]
        old.close()
        manage("migrate", "-v0")
        new = psycopg2.connect(url)
        with new, new.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'telemetry_processrecord'::regclass")
            assert cursor.fetchone() is not None
            cursor.execute("SELECT array_agg(id ORDER BY id) FROM telemetry_processrecord")
            assert cursor.fetchone()[0] == ids
            cursor.execute("SELECT count(*) FROM telemetry_processrecord_default")
            assert cursor.fetchone()[0] == 0  # every day of the old rows got its partition
            # Renamed by telemetry 0007 on the parent table, and so in every partition.
            cursor.execute("SELECT column_name, count(*) FROM information_schema.columns WHERE table_name LIKE "
                           "'telemetry_processrecord%%' AND column_name LIKE 'model_%%' GROUP BY column_name")
            columns = dict(cursor.fetchall())
            assert set(columns) == {"model_number"} and columns["model_number"] > 2  # the parent, default and days
            # The rollups training reads were made from the old rows (telemetry 0012).
            cursor.execute("SELECT count(*), sum(n), sum(n00) FROM telemetry_processrollup WHERE name_norm = 'bash'")
            assert cursor.fetchone() == (5, 10, 10)
            cursor.execute("SELECT count(*), sum(snapshots) FROM telemetry_hostday")
            assert cursor.fetchone()[1] == 5
            # New rows continue the old ids.
            cursor.execute(
                "INSERT INTO telemetry_processrecord (snapshot_id, endpoint_id, observed_at, hour, index, name, name_norm, "
                "parent_name, exe, exe_norm, username, cmdline, reasons, status) SELECT snapshot_id, endpoint_id, "
                "observed_at, 0, 9, 'sh', 'sh', '', '', '', '', '', '[]', '' FROM telemetry_processrecord LIMIT 1 RETURNING id")
            assert cursor.fetchone()[0] == max(ids) + 1
        new.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

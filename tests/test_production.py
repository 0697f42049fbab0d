"""The production shape: gunicorn with several workers, Redis for cache and broker, PostgreSQL; and its faults."""
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from audit.models import AuditEvent
from axon.models import ModelVersion, TrainingRun
from telemetry.models import AgentKey, ProcessRecord, Snapshot
from tests import fleet
from tests.conftest import REPO, _user
from tests.harness import CuttableProxy, Gunicorn, redis_or_skip
from tests.payloads import rich

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def gunicorn(tmp_path):
    """Start gunicorn (production settings but the test database) with `gunicorn(env, workers=N)`; its log is shown
    when the test fails."""
    started: list[Gunicorn] = []

    def start(env: dict, workers: int = 3) -> Gunicorn:
        env = {**env, "SECRET_KEY": "test-production-key-" + "x" * 40, "ALLOWED_HOSTS": "127.0.0.1",
               "MODEL_REFRESH_SECONDS": "0.5"}
        server = Gunicorn(env, tmp_path / f"gunicorn-{len(started)}.log", workers=workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        print(f"\n--- gunicorn log ({server.log}) ---\n{server.tail(40)}")  # pytest shows it if the test failed


def test_check_deploy_is_clean_with_production_settings(subprocess_env):
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "voltaxe.settings", "VOLTAXE_TESTING": "0", "DEBUG": "0",
           "SECRET_KEY": "a-production-secret-key-that-is-long-and-random-0123456789abcdef",
           "ALLOWED_HOSTS": "voltaxe.example.com", "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_PRELOAD": "1",
           "REDIS_URL": REDIS_URL}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    missing_key = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=missing_key,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("name, value", [("RETRAIN_USER_RATE", "1/5x"), ("TOKEN_RATE", "ten per minute"),
                                         ("MODEL_REFRESH_SECONDS", "soon")])
def test_a_mistyped_setting_stops_the_start_and_names_itself(subprocess_env, name, value):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env={**subprocess_env, name: value},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"{name} must be" in result.stderr and repr(value) in result.stderr, result.stderr[-500:]


def jwt(server: Gunicorn, username: str) -> dict:
    code, body = server.request("POST", "/api/auth/token/", {"username": username, "password": "correct-horse-battery"})
    assert code == 200, body
    return {"Authorization": f"Bearer {body['access']}"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_limits_single_flight_and_model_swaps_hold_across_web_workers(subprocess_env, gunicorn):
    redis_or_skip(REDIS_URL)
    fleet.history(days=2)
    assert fleet.train().status == "succeeded" and fleet.train().status == "succeeded"
    admins = [_user(f"admin{i}", "Security Admin", email=f"admin{i}@voltaxe.test") for i in range(10)]
    _, key = AgentKey.objects.create_key(name="prod-agent")
    server = gunicorn({**subprocess_env, "REDIS_URL": REDIS_URL}, workers=3)
    tokens = [jwt(server, a.username) for a in admins]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda h: server.request("POST", "/api/axon/retrain", {}, h), tokens))
    statuses = sorted(body["status"] for code, body in answers)
    assert [code for code, _ in answers] == [200] * 10
    assert statuses == ["already_running"] * 9 + ["training_started"]
    assert TrainingRun.objects.filter(trigger="api").count() == 1
    # Each request may land on any worker: the per-user limit is read from the recorded presses.
    again = [server.request("POST", "/api/axon/retrain", {}, tokens[0]) for _ in range(4)]
    assert [code for code, _ in again] == [429] * 4
    assert AuditEvent.objects.filter(action="retrain.started", actor__isnull=False).count() == 1
    assert AuditEvent.objects.filter(action="retrain.joined").count() == 9
    # Identical refusals are counted on one event (audit_record(aggregate=True)), not written one by one.
    assert sum(AuditEvent.objects.filter(action="retrain.rate_limited").values_list("count", flat=True)) == 4
    # Roll back to v1: every worker scores with it shortly after, without a restart.
    TrainingRun.objects.update(status="succeeded")
    code, _ = server.request("POST", "/api/axon/models/1/activate/", {}, tokens[1])
    assert code == 200
    agent = {"Authorization": f"Api-Key {key}"}
    versions, deadline, i = [], time.monotonic() + 30, 0
    while time.monotonic() < deadline:
        code, body = server.request("POST", "/api/telemetry/snapshots/", rich("swap-host", minutes_ago=i), agent)
        assert code == 201, body
        versions.append(body["model_version"])
        i += 1
        if versions[-15:] == [1] * 15:
            break
    assert versions[-15:] == [1] * 15, versions


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_agents_retry_through_a_database_restart_and_nothing_is_lost_or_half_written(subprocess_env, gunicorn):
    if connection.vendor != "postgresql":
        pytest.skip("a database server restart is a PostgreSQL matter")
    db = connection.settings_dict
    proxy = CuttableProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    _, key = AgentKey.objects.create_key(name="restart-agent")
    env = {**subprocess_env, "DATABASE_URL": f"postgres://{db['USER'] or ''}@127.0.0.1:{proxy.port}/{db['NAME']}"}
    sent, codes = [], []
    try:
        server = gunicorn(env, workers=2)
        agent = {"Authorization": f"Api-Key {key}"}

        def restart():
            time.sleep(1.0)
            proxy.cut()
            time.sleep(2.0)
            proxy.restore()

        threading.Thread(target=restart, daemon=True).start()
        deadline = time.monotonic() + 30
        for i in range(40):
            payload = rich(f"db-restart-{i % 3}", minutes_ago=i)
            sent.append((payload["hostname"], payload["timestamp"]))
            while time.monotonic() < deadline:  # an agent retries until the server takes it
                try:
                    code, body = server.request("POST", "/api/telemetry/snapshots/", payload, agent)
                except OSError:
                    code, body = 0, {}
                codes.append(code)
                if code in (200, 201):
                    break
                assert code in (0, 502, 503), body
                if code == 503:
                    assert "Retry" in body["detail"]
                time.sleep(0.2)
            time.sleep(0.1)
    finally:
        proxy.close()
    assert any(c == 503 for c in codes), "the outage was never seen"
    assert Snapshot.objects.count() == len(set(sent)) == 40
    assert all(s.process_count == 3 for s in Snapshot.objects.all())
    assert ProcessRecord.objects.count() == 40 * 3


@pytest.mark.django_db
def test_redis_down_answers_503_with_a_sentence_and_starts_nothing(admin_client, settings):
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}}}
    response = admin_client.post("/api/axon/retrain")
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"] and response["Retry-After"]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_unwritable_model_store_fails_the_check_and_the_run_and_the_old_model_serves(settings, tmp_path):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.MODEL_STORE_DIR = blocker / "models"
    with pytest.raises(SystemCheckError, match="axon.E001"):
        call_command("check")
    run = fleet.train()
    assert run.status == "failed" and "previous model keeps serving" in run.message
    assert ModelVersion.objects.get(is_active=True).version == 1


@pytest.mark.django_db
def test_a_broker_that_cannot_take_the_run_fails_it_at_once(admin_client, monkeypatch, django_capture_on_commit_callbacks):
    from axon.services import press

    def down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(press, "async_task", down)  # where the press looks it up
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/api/axon/retrain")
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert run.status == "failed" and "could not be queued" in run.message
    assert AuditEvent.objects.filter(action="retrain.failed", resource_id=str(run.pk)).exists()


def test_every_setting_read_from_the_environment_is_in_the_readmes_table():
    """The configuration table is the one place an operator looks: a variable settings reads and the table
    does not name is a knob nobody can find."""
    import re

    from tests.conftest import REPO

    source = (REPO / "voltaxe" / "settings.py").read_text()
    read = set(re.findall(r'(?:env_[a-z]+|os\.environ\.get)\("([A-Z][A-Z0-9_]+)"', source))
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| variable | meaning |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert len(read) > 40 and not read - named, f"read by settings, missing from the README's table: {sorted(read - named)}"

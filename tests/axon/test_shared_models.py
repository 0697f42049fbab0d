"""Two app hosts, each with its own model folder, on one PostgreSQL and Redis: a model trained by a
worker with a third folder is used by both, a deleted cache is harmless, a tampered one is fetched again."""
import os

import pytest
from django.db import connection

from axon.models import ModelVersion, TrainingRun
from telemetry.models import AgentKey
from tests import fleet
from tests.conftest import _user
from tests.harness import Gunicorn, QCluster, stop_all, wait_for
from tests.payloads import rich

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _serving_version(server: Gunicorn, key: str, hostname: str, step: list[int]) -> int | None:
    step[0] += 1
    code, body = server.request("POST", "/api/telemetry/snapshots/", rich(hostname, minutes_ago=step[0] / 10),
                                {"Authorization": f"Api-Key {key}"})
    assert code == 201, body
    return body["model_version"]


def _until(predicate, seconds: float, what: str):
    wait_for(predicate, seconds, what, every=0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_model_trained_on_one_host_is_served_by_every_host(subprocess_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("app hosts share a PostgreSQL server; SQLite is one machine's file")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"  # v1, written by this process to its own folder
    _user("sam", "Security Admin", email="sam@voltaxe.test")
    keys = {h: AgentKey.objects.create_key(name=h)[1] for h in ("host-a", "host-b")}
    # One secret key for the web hosts and the worker: django-q2 signs the tasks it queues with it.
    env = {**subprocess_env, "REDIS_URL": REDIS_URL, "MODEL_REFRESH_SECONDS": "0.5", "ALLOWED_HOSTS": "127.0.0.1",
           "SECRET_KEY": "test-production-key-" + "x" * 40}
    folders = {name: tmp_path / name for name in ("app-a", "app-b", "worker")}
    # One worker each, so that every answer below comes from the process whose cache is checked.
    a = Gunicorn({**env, "MODEL_STORE_DIR": str(folders["app-a"])}, tmp_path / "app-a.log", workers=1)
    b = Gunicorn({**env, "MODEL_STORE_DIR": str(folders["app-b"])}, tmp_path / "app-b.log", workers=1)
    worker = QCluster({**env, "MODEL_STORE_DIR": str(folders["worker"])}, tmp_path / "worker.log")
    try:
        for process in (a, b, worker):
            process.start()
        steps = {"a": [0], "b": [0]}
        # Neither host ever saw v1's file: both fetch it from the database.
        assert _serving_version(a, keys["host-a"], "host-a", steps["a"]) == 1
        assert _serving_version(b, keys["host-b"], "host-b", steps["b"]) == 1
        code, body = a.request("POST", "/api/auth/token/", {"username": "sam", "password": "correct-horse-battery"})
        code, body = a.request("POST", "/api/axon/retrain", {"reason": "shared store"},
                               {"Authorization": f"Bearer {body['access']}"})
        assert code == 200 and body["status"] == "training_started", body
        run_id = body["run_id"]
        _until(lambda: TrainingRun.objects.get(pk=run_id).status not in ("queued", "running"), 120, "the run")
        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == "succeeded", (run.message, worker.tail(30))
        for server, key, host, step in ((a, keys["host-a"], "host-a", steps["a"]),
                                        (b, keys["host-b"], "host-b", steps["b"])):
            _until(lambda s=server, k=key, h=host, n=step: _serving_version(s, k, h, n) == 2, 30,
                   f"{host} to score with v2")
        v2 = ModelVersion.objects.get(version=2)
        assert sorted(p.name for p in folders["app-b"].iterdir() if p.suffix == ".model") == sorted(
            [ModelVersion.objects.get(version=1).artifact_path, v2.artifact_path])
        # A deleted cache on one host and a tampered one on the other: both go back to v1 and then to v2
        # again through the database, never through the changed file.
        (folders["app-a"] / v2.artifact_path).unlink()
        cached = folders["app-b"] / v2.artifact_path
        good = cached.read_bytes()
        cached.write_bytes(good[:-10] + b"0123456789")
        for server in (a, b):
            code, body = server.request("GET", "/healthz")
            assert code == 200 and body["active_model"] == 2
        ModelVersion.objects.filter(version=2).update(is_active=False)
        ModelVersion.objects.filter(version=1).update(is_active=True)
        _until(lambda: _serving_version(a, keys["host-a"], "host-a", steps["a"]) == 1, 30, "host-a back on v1")
        _until(lambda: _serving_version(b, keys["host-b"], "host-b", steps["b"]) == 1, 30, "host-b back on v1")
        ModelVersion.objects.filter(version=1).update(is_active=False)
        ModelVersion.objects.filter(version=2).update(is_active=True)
        _until(lambda: _serving_version(a, keys["host-a"], "host-a", steps["a"]) == 2, 30, "host-a on v2 again")
        _until(lambda: _serving_version(b, keys["host-b"], "host-b", steps["b"]) == 2, 30, "host-b on v2 again")
        assert cached.read_bytes() == good and (folders["app-a"] / v2.artifact_path).read_bytes() == good
    finally:
        stop_all([worker, a, b])

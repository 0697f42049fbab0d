"""The retrain through the real task queue: a django-q2 worker in a subprocess, on the ORM broker and on Redis."""
import os
import subprocess
import sys
import time

import pytest

from axon.models import ModelVersion, TrainingRun
from tests import fleet
from tests.conftest import REPO
from tests.harness import QCluster, redis_or_skip, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SLOW_TRAINING = f"{REPO / 'tests' / 'hooks' / 'slow_training'}:{REPO}"


@pytest.fixture(params=["orm", "redis"])
def broker_env(request, subprocess_env, tmp_path):
    # The ORM broker keeps cluster heartbeats in a file cache: one per test, so no other test's worker is seen.
    env = {**subprocess_env, "QSTATS_CACHE_DIR": str(tmp_path / "qstats")}
    if request.param == "orm":
        return env
    redis_or_skip(REDIS_URL)
    return {**env, "REDIS_URL": REDIS_URL}


@pytest.fixture
def worker(broker_env, tmp_path):
    """`worker(**env)` starts a qcluster; its output goes to a file (a pipe nobody reads would stall it) and is
    shown when the test fails."""
    started: list[QCluster] = []

    def start(**extra) -> QCluster:
        env = {**broker_env, **{k: str(v) for k, v in extra.items()}}
        w = QCluster(env, tmp_path / f"qcluster-{len(started)}.log").start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(grace=3)
        print(f"\n--- worker output ({w.log}) ---\n{w.tail(60)}")  # pytest shows it if the test failed


def press(env, *args, timeout=120):
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "retrain", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def history(db):
    fleet.history(days=2)


def test_the_worker_carries_out_a_press_and_the_new_model_goes_live(history, worker, broker_env):
    worker()
    result = press(broker_env, "--wait", "--reason", "first model", "--timeout", "90")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100%" in result.stdout and "Model v1 is active" in result.stdout
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.trigger == "command" and run.task_id
    assert ModelVersion.objects.get(is_active=True).run == run


PRESSER = """
import threading
from audit.actors import Actor
from axon.services.press import retrain_request
barrier, answers = threading.Barrier(5), []
def press():
    barrier.wait()
    answers.append(retrain_request(actor=Actor()).status)
threads = [threading.Thread(target=press) for _ in range(5)]
[t.start() for t in threads]
[t.join() for t in threads]
print(" ".join(answers))
"""


def test_twenty_concurrent_presses_from_several_processes_make_one_run(history, broker_env):
    procs = [subprocess.Popen([sys.executable, str(REPO / "manage.py"), "shell", "-c", PRESSER], cwd=REPO, env=broker_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    lines = [line for out, _ in outputs for line in out.split() if line in ("training_started", "already_running")]
    assert sorted(lines) == ["already_running"] * 19 + ["training_started"], [e for _, e in outputs]
    assert TrainingRun.objects.count() == 1


def test_a_killed_worker_leaves_a_run_the_reaper_fails_and_the_old_model_serving(history, worker, broker_env, settings):
    assert fleet.train().status == "succeeded"
    w = worker(VOLTAXE_TEST_TRAINING_DELAY=30, PYTHONPATH=SLOW_TRAINING)
    assert press(broker_env).returncode == 0
    run = TrainingRun.objects.get(status__in=["queued", "running"])
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).stage == "training", 60, "the run to reach training")
    w.kill()
    settings.RETRAIN_REAP_GRACE_SECONDS = 1
    time.sleep(2)
    from axon.services.runs import runs_reap

    assert runs_reap() == 1
    run.refresh_from_db()
    assert run.status == "failed" and "probably killed" in run.message
    assert ModelVersion.objects.get(is_active=True).version == 1
    # The next press works, with a healthy worker.
    worker()
    result = press(broker_env, "--wait", "--timeout", "90")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ModelVersion.objects.get(is_active=True).version == 2


def test_a_run_past_a_short_timeout_ends_timed_out_and_the_old_model_stays(history, worker, broker_env):
    assert fleet.train().status == "succeeded"
    worker(VOLTAXE_TEST_TRAINING_DELAY=8, RETRAIN_TIMEOUT_SECONDS=5, PYTHONPATH=SLOW_TRAINING)
    result = press({**broker_env, "RETRAIN_TIMEOUT_SECONDS": "5"}, "--wait", "--timeout", "60")
    assert result.returncode != 0
    run = TrainingRun.objects.exclude(trigger="command", status="succeeded").get()
    assert run.status == "timed_out", run.message
    assert ModelVersion.objects.get(is_active=True).version == 1
    assert ModelVersion.objects.count() == 1


HEALTH = "from django.test import Client; print(Client().get('/healthz').json()['worker'])"


def test_healthz_sees_the_worker(worker, broker_env):
    def seen() -> str:
        out = subprocess.run([sys.executable, str(REPO / "manage.py"), "shell", "-c", HEALTH], cwd=REPO, env=broker_env,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip().splitlines()[-1]

    assert seen() == "down"
    worker()
    wait_for(lambda: seen() == "ok", 40, "the worker's heartbeat")

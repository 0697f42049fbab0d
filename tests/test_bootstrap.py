"""`bootstrap.py run` as a user starts and stops it: everything it started is gone soon after SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.conftest import REPO
from tests.harness import free_port


@pytest.mark.slow
def test_run_serves_the_demo_and_sigterm_to_its_group_stops_every_process(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "VOLTAXE_TEST_CLOCK_SHIFT"}}
    env.update(PORT=str(port), SQLITE_PATH=str(tmp_path / "db.sqlite3"), MODEL_STORE_DIR=str(tmp_path / "models"),
               QSTATS_CACHE_DIR=str(tmp_path / "qstats"))
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "bootstrap.py"), "run"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: list[psutil.Process] = []
    try:
        health = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and health.get("worker") != "ok":
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2))
            except OSError:
                pass
            time.sleep(0.5)
        assert health.get("worker") == "ok" and health.get("active_model") == 1, (tmp_path / "run.log").read_text()
        bootstrap = psutil.Process(proc.pid)
        started = [bootstrap, *bootstrap.children(recursive=True)]
        assert len(started) >= 5  # bootstrap, the server, the collector, qcluster and the workers it forked
        os.killpg(proc.pid, signal.SIGTERM)
        gone, alive = psutil.wait_procs(started, timeout=12)
        assert not alive, f"still running after SIGTERM: {[_describe(p) for p in alive]}"
    finally:
        for p in started:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait()
        log.close()


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (gone or a zombie)"

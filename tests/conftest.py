"""Named personas and shared fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parent.parent

# --clock-sweep runs the tests marked `clock` (the fleet stories whose verdicts are asserted)
# again at each of these instants: every hour of a weekday (alternately just after and just
# before the hour turns), a weekend, a month end and a year end that the test runs across,
# and a leap day. Tests that start workers, servers or browsers are not marked: those run in
# other processes, which keep the suite's pinned clock (voltaxe.settings_test).
CLOCK_SWEEP = [f"2026-11-11T{h:02d}:{'00:20' if h % 2 else '59:40'}+00:00" for h in range(24)] + [
    "2026-11-14T03:10:00+00:00", "2026-11-15T21:45:00+00:00", "2026-11-30T23:59:30+00:00",
    "2026-12-31T23:58:00+00:00", "2028-02-29T12:00:00+00:00",
]


def pytest_addoption(parser):
    parser.addoption("--clock-sweep", action="store_true",
                     help="Run only the tests marked `clock`, once at each instant of CLOCK_SWEEP.")


def pytest_generate_tests(metafunc):
    if metafunc.config.getoption("clock_sweep") and metafunc.definition.get_closest_marker("clock"):
        metafunc.parametrize("_clock", CLOCK_SWEEP, indirect=True, ids=[t[:16] for t in CLOCK_SWEEP])


def pytest_collection_modifyitems(config, items):
    if config.getoption("clock_sweep"):
        swept = [item for item in items if hasattr(item, "callspec") and "_clock" in item.callspec.params]
        config.hook.pytest_deselected(items=[item for item in items if item not in swept])
        items[:] = swept


@pytest.fixture(autouse=True)
def _clock(request):
    """Every test runs at the suite's pinned now (voltaxe.settings_test); under --clock-sweep, at the swept instant."""
    instant = getattr(request, "param", None)
    if instant is None:
        yield
        return
    import time_machine

    with time_machine.travel(instant, tick=True):
        yield


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    """Every test gets its own model store and a cold model cache and rate-limit cache."""
    from django.core.cache import cache

    from axon.scoring import model_cache

    settings.MODEL_STORE_DIR = tmp_path / "models_store"
    model_cache.reset()
    cache.clear()
    yield
    model_cache.reset()


def _role(name: str) -> Group:
    """The role the data migration creates; tests that flush the database (transaction=True) lose it, so make it again."""
    from django.apps import apps

    from voltaxe.roles import roles_sync

    if not Group.objects.filter(name=name).exists():
        roles_sync(apps)
    return Group.objects.get(name=name)


def _user(username: str, group: str | None, **extra) -> User:
    user = User.objects.create_user(username=username, password="correct-horse-battery", **extra)
    if group:
        user.groups.add(_role(group))
    return user


@pytest.fixture
def admin_user(db) -> User:
    """A security admin (group member, not a superuser: the role must carry the rights)."""
    return _user("sam", "Security Admin", email="sam@voltaxe.test")


@pytest.fixture
def other_admin(db) -> User:
    return _user("sasha", "Security Admin", email="sasha@voltaxe.test")


@pytest.fixture
def analyst(db) -> User:
    return _user("ann", "Analyst", email="ann@voltaxe.test")


@pytest.fixture
def nobody(db) -> User:
    """Logged in, but in no role."""
    return _user("norole", None)


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> APIClient:
    return client_for(admin_user)


@pytest.fixture
def analyst_client(analyst) -> APIClient:
    return client_for(analyst)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def agent_key(db) -> str:
    from telemetry.models import AgentKey

    _, key = AgentKey.objects.create_key(name="test-agent")
    return key


@pytest.fixture
def agent_client(agent_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {agent_key}")
    return client


@pytest.fixture
def subprocess_env(settings) -> dict:
    """Environment for a manage.py subprocess that must see this test's database and model store."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH"}}
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env["MODEL_STORE_DIR"] = str(settings.MODEL_STORE_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "voltaxe.settings_test"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def manage(subprocess_env):
    """Run `manage.py ARGS` in a real subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*args: str, timeout: float = 120, check: bool = False, **kwargs):
        return subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=timeout, check=check, **kwargs,
        )

    return run

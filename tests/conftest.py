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
    import importlib

    from django.contrib.auth.models import Permission

    roles = importlib.import_module("axon.migrations.0002_roles")
    group, created = Group.objects.get_or_create(name=name)
    if created:
        for app_label, codename in {"Analyst": roles.ANALYST, "Security Admin": roles.SECURITY_ADMIN}[name]:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


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

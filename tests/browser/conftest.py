"""Chromium (Playwright, sync API) against pytest-django's live_server, with a real django-q2 worker when a press must train.

Playwright's sync API keeps an event loop running in this thread, and Django refuses ORM
calls from such a thread unless DJANGO_ALLOW_ASYNC_UNSAFE is set: the tests, their fixtures
and pytest-django's flush use the ORM. The `browser` fixture sets it for this directory's
modules only, so the rest of the suite keeps Django's guard.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# The browser only ever opens pages on 127.0.0.1 (pytest-django's live_server would say "localhost").
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

from tests import fleet  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.harness import QCluster  # noqa: E402

CHROMIUM = Path(os.environ.get("VOLTAXE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
PASSWORD = "correct-horse-battery"
SLOW_TRAINING_HOOK = REPO / "tests" / "hooks" / "slow_training"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so the page fixture knows at teardown whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")


@pytest.fixture(scope="module", autouse=True)
def browser():
    """One Chromium per module, set up before anything else (autouse). Missing Chromium skips the module
    locally and fails it on CI."""
    if not CHROMIUM.exists():
        why = f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium'); the browser tests need it."
        if os.environ.get("CI"):
            pytest.fail(why + " CI is set, so this is a failure, not a skip.", pytrace=False)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    except Exception:
        pw.stop()
        raise
    yield chromium
    chromium.close()
    pw.stop()
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def page(request, browser, live_server):
    """A fresh context (own cookies) per test; a full-page screenshot in test-artifacts/ when the test fails."""
    from playwright.sync_api import expect

    expect.set_options(timeout=5_000)
    assert live_server.url.startswith("http://127.0.0.1:"), live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    failed = any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))
    if failed:
        try:
            path = _artifact_path(request.node.nodeid.split("::")[-1])
            pg.screenshot(path=str(path), full_page=True)
            print(f"\nscreenshot of the failed test: {path}")
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"\ncould not take a screenshot: {exc}")
    context.close()


@pytest.fixture
def login(page):
    """Log in through the real form, starting from the page (which redirects to /login/)."""
    from playwright.sync_api import expect

    def do(username: str):
        page.goto("/live-telemetry/")
        expect(page).to_have_url(re.compile(r"/login/\?next="))
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/live-telemetry/$"))
        expect(page.get_by_role("heading", name="Live Telemetry", level=1)).to_be_visible()
        # The script shows the Pause button once it has taken over: the page is live from here on.
        expect(page.get_by_role("button", name="Pause")).to_be_visible()
        return page

    return do


@pytest.fixture
def fleet_flagged(db):
    """Two days of history, model v1 trained on it, then the last hours with Figma.exe and kdevtmpfsi flagged."""
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)


@pytest.fixture
def worker(subprocess_env, tmp_path):
    """Start a real worker on the default ORM broker (the test's database); `worker(training_delay=4)` slows
    training down. Its output is shown when the test fails."""
    started: list[QCluster] = []

    def start(*, training_delay: float = 0) -> QCluster:
        env = dict(subprocess_env)
        if training_delay:
            env["VOLTAXE_TEST_TRAINING_DELAY"] = str(training_delay)
            env["PYTHONPATH"] = f"{SLOW_TRAINING_HOOK}:{env['PYTHONPATH']}"
        w = QCluster(env, tmp_path / f"worker-{len(started)}.log").start()
        started.append(w)
        return w.wait_ready(30)

    yield start
    for w in started:
        w.stop(grace=2)  # the run is over by now; do not wait for the cluster's slow goodbye
        print(f"\n--- worker output ({w.log}) ---\n{w.tail(60)}")  # pytest shows it if the test failed

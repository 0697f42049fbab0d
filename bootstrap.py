#!/usr/bin/env python3
"""Set up and run Voltaxe on a fresh machine with only Python 3.11 (standard library only).

    python3.11 bootstrap.py run     # the product on the embedded default, with demo data and a printed login
    python3.11 bootstrap.py test    # the test suite on SQLite, then on PostgreSQL, then the clock sweep

Both create ./.venv and install requirements.txt into it first (again only when it changed); `test` also
installs requirements-test.txt and runs the lint and type checks (pyproject.toml) before the tests.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
CACHE = ROOT / ".cache"
DEFAULT_POSTGRES = "postgres://127.0.0.1:5432/postgres"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_venv(requirements: str = "requirements.txt") -> None:
    if sys.version_info[:2] != (3, 11):
        say(f"note: Voltaxe is built and tested on Python 3.11; this is {sys.version.split()[0]}")
    if not PY.exists():
        say("creating .venv")
        venv.EnvBuilder(with_pip=True).create(VENV)
    # requirements-test.txt includes requirements.txt: its stamp covers both files.
    files = sorted({"requirements.txt", requirements})
    stamp = VENV / f".{Path(requirements).stem}.sha256"
    digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in files)).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        say(f"installing {requirements} into .venv")
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-r", str(ROOT / requirements)], check=True)
        stamp.write_text(digest)


def manage(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(PY), str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, **kwargs)


def run(argv: list[str]) -> int:
    ensure_venv()
    CACHE.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    port = env.get("PORT", "8000")
    manage("migrate", "--no-input", env=env, check=True, stdout=subprocess.DEVNULL)
    password_file = CACHE / "admin-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    # One argument, "--password=…": a generated password may start with "-" (token_urlsafe), which argparse
    # would take for an option (one run in 64 failed to start).
    manage("ensure_admin", "--username", "admin", "--email", "admin@voltaxe.local", f"--password={password}", env=env,
           check=True)
    manage("demo_data", "--if-empty", env=env, check=True)
    # Each child leads its own process group, so that stopping can reach the workers a child
    # forks (qcluster's) and finish them off if they do not stop in time.
    children = [
        spawn([str(PY), "manage.py", "qcluster"], env),
        spawn([str(PY), "manage.py", "collect", "--every", "60"], env, stdout=subprocess.DEVNULL),
    ]
    print(
        f"\n  Voltaxe is starting on http://127.0.0.1:{port}/\n"
        f"  Log in as:  admin / {password}   (security admin)\n"
        f"  Stop with Ctrl-C.\n",
        flush=True,
    )
    # SIGTERM (a service manager, `kill`) stops everything the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    server = spawn([str(PY), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop([server, *children], grace=5)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def spawn(argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, **kwargs)


def stop(children: list[subprocess.Popen], grace: float) -> None:
    """Ask each child's process group to stop, then kill what is left after `grace` seconds."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        # The group too: a worker forked by qcluster can outlive its parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium, and the syslog test a real rsyslog; install them where we can."""
    wanted = {"chromium": Path("/usr/bin/chromium"), "rsyslog": Path("/usr/sbin/rsyslogd")}
    missing = [package for package, program in wanted.items() if not program.exists()]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' and '.join(missing)} (apt-get) for the browser and syslog tests")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for package, program in wanted.items():
        if not program.exists():
            say(f"{package} is not installed: its tests will be skipped (apt-get install {package})")


def postgres_reachable(url: str) -> bool:
    code = f"import psycopg2; psycopg2.connect({url!r}, connect_timeout=3).close()"
    return subprocess.run([str(PY), "-c", code], capture_output=True).returncode == 0


def lint() -> int:
    """ruff and mypy, configured in pyproject.toml; non-zero if either finds something."""
    say("lint (ruff check .) and types (mypy)")
    ruff = subprocess.run([str(PY), "-m", "ruff", "check", "."], cwd=ROOT).returncode
    mypy = subprocess.run([str(PY), "-m", "mypy"], cwd=ROOT).returncode
    return ruff or mypy


def test(argv: list[str]) -> int:
    ensure_venv("requirements-test.txt")
    if lint():
        say("lint or type check FAILED: fix what they report (the tests did not run)")
        return 1
    ensure_chromium()
    CACHE.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    pytest = [str(PY), "-m", "pytest", *argv]
    say("tests on SQLite (the embedded default)")
    sqlite_rc = subprocess.run(pytest, cwd=ROOT, env=base).returncode
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES)
    if not postgres_reachable(url):
        say(f"PostgreSQL at {url} does not answer: the PostgreSQL run is skipped (set TEST_DATABASE_URL)")
        pg_rc = 1 if os.environ.get("CI") else 0
    else:
        say(f"tests on PostgreSQL ({url})")
        pg_rc = subprocess.run(pytest, cwd=ROOT, env={**base, "DATABASE_URL": url}).returncode
    # The fleet stories again at every hour of a day, a weekend, a month end (tests/conftest.py):
    # a result that depends on when the suite runs fails here, not some night in CI.
    say("clock sweep: the fleet stories at many clock times (SQLite)")
    sweep_rc = subprocess.run([*pytest, "--clock-sweep"], cwd=ROOT, env=base).returncode
    sweep_rc = 0 if sweep_rc == 5 else sweep_rc  # 5: the arguments selected no swept test
    outcomes = {"SQLite": sqlite_rc, "PostgreSQL": pg_rc, "clock sweep": sweep_rc}
    say("; ".join(f"{name}: {'passed' if rc == 0 else 'FAILED'}" for name, rc in outcomes.items()))
    return 0 if not any(outcomes.values()) else 1


def main() -> int:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

"""Settings for the test suite: the product's settings with test-only speed-ups."""
import os

os.environ.setdefault("VOLTAXE_TESTING", "1")

from voltaxe.settings import *  # noqa: E402,F403
from voltaxe.settings import BASE_DIR, DATABASES  # noqa: E402

# Tests hash many passwords; the production hasher is slow on purpose.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory: commands, workers and servers started by tests open it too.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".cache" / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# The suite runs at a pinned "now" (VOLTAXE_TEST_NOW, an ISO 8601 time; a fixed Wednesday
# afternoon by default), so nothing it asserts depends on the hour, weekday or date it runs.
# The clock ticks from there. The offset travels in the environment, so the workers, servers
# and commands a test starts share the test's clock instead of pinning their own.
import time  # noqa: E402
from datetime import datetime  # noqa: E402

import time_machine  # noqa: E402

DEFAULT_TEST_NOW = "2026-11-11T14:24:00+00:00"
if "VOLTAXE_TEST_CLOCK_SHIFT" not in os.environ:
    _pinned = datetime.fromisoformat(os.environ.get("VOLTAXE_TEST_NOW") or DEFAULT_TEST_NOW)
    os.environ["VOLTAXE_TEST_CLOCK_SHIFT"] = repr(_pinned.timestamp() - time.time())
time_machine.travel(time.time() + float(os.environ["VOLTAXE_TEST_CLOCK_SHIFT"]), tick=True).start()
# time_machine's clock starts ticking at its first reading, not at start(): read it now, or a
# process that first asks the time seconds after importing these settings (a gunicorn worker
# still importing scikit-learn on a loaded machine) runs those seconds behind the others, and
# refuses as "not yet valid" a token another worker has just issued (issue 24).
time.time()

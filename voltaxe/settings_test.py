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

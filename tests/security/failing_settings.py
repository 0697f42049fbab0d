"""The test settings with URLs that add one failing view, to see what a real server answers for a 500."""
from voltaxe.settings_test import *  # noqa: F401,F403

ROOT_URLCONF = "tests.security.failing_urls"

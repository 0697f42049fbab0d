"""Class 5: paths with per-run random parts fold to one key; a disguise in such a folder is still news."""
import uuid

import pytest

from tests import fleet
from tests.axon import demo_stories as stories

TEMP = "C:\\Users\\ana\\AppData\\Local\\Temp\\"
TERMINAL = "C:\\Program Files\\WindowsApps\\Microsoft.WindowsTerminal_{v}_x64__8wekyb3d8bbwe\\WindowsTerminal.exe"


def _guid(rng) -> str:
    return "{" + str(uuid.UUID(int=rng.getrandbits(128))).upper() + "}"


def _token(rng, n=8) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n - 2)) + f"{rng.randrange(10, 99)}"


def extra(host, hour, rng):
    """Every few hours: an updater unpacked in a new GUID folder, a terminal whose package version moves,
    a build tool in a fresh build folder, a portable app mounted at a random point."""
    if hour % 3:
        return []
    if host == "laptop-ana":
        return [{"name": "GoogleUpdateSetup.exe", "exe": TEMP + _guid(rng) + "\\GoogleUpdateSetup.exe",
                 "username": "ana", "parent": "svchost.exe"},
                {"name": "WindowsTerminal.exe", "exe": TERMINAL.format(v=f"1.18.{3000 + hour}.0"), "username": "ana",
                 "parent": "explorer.exe"}]
    if host == "build-01":
        return [{"name": "main", "exe": f"/tmp/go-build{rng.randrange(10**8, 10**9)}/b001/exe/main",
                 "username": "builder", "parent": "java"},
                {"name": "obsidian", "exe": f"/tmp/.mount_Obsid{_token(rng, 6)}/obsidian", "username": "builder",
                 "parent": "systemd"}]
    return []


@pytest.fixture
def trained(db):
    split = stories.history(extra)
    assert fleet.train().status == "succeeded"
    return split


@pytest.mark.clock
@pytest.mark.django_db
def test_a_new_random_folder_of_a_known_program_is_not_news(trained):
    import random

    rng = random.Random(99)
    results = fleet.ingest([
        stories.snapshot("laptop-ana", extra("laptop-ana", 0, rng)
                         + [{"name": "WindowsTerminal.exe", "exe": TERMINAL.format(v="1.19.10302.0"), "username": "ana",
                             "parent": "explorer.exe"}]),
        stories.snapshot("build-01", extra("build-01", 0, rng)),
    ])
    assert stories.flagged(results) == {}


@pytest.mark.clock
@pytest.mark.django_db
def test_a_disguise_in_a_random_folder_is_still_news(trained):
    import random

    rng = random.Random(5)
    results = fleet.ingest([
        stories.snapshot("laptop-ana", [{"name": "svchost.exe", "exe": TEMP + _guid(rng) + "\\svchost.exe",
                                         "username": "ana", "parent": "explorer.exe"}]),
        stories.snapshot("build-01", [{"name": "kinsing", "exe": f"/tmp/go-build{rng.randrange(10**8, 10**9)}/kinsing",
                                       "username": "builder", "parent": "java"}]),
    ])
    found = stories.flagged(results)
    assert set(found) == {"svchost.exe", "kinsing"}
    assert "unusual path for svchost.exe" in found["svchost.exe"]
    assert "never seen on this host" in found["kinsing"]

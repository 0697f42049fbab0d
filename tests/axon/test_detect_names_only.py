"""Class 8: agents that send names only keep working, and their verdicts say they rest on the name alone."""
import pytest

from tests import fleet
from tests.axon import demo_stories as stories

NAME_ONLY = "judged by name only: this agent does not send paths, parents or users"


@pytest.fixture
def trained(db):
    stories.history(lambda host, hour, rng: [], legacy_hosts=("laptop-raj",))
    assert fleet.train().status == "succeeded"


@pytest.mark.clock
@pytest.mark.django_db
def test_a_new_name_from_a_names_only_agent_is_flagged_and_says_so(trained):
    results = fleet.ingest([stories.snapshot("laptop-raj", [{"name": "mimikatz.exe"}], legacy=True)])
    found = stories.flagged(results)
    assert set(found) == {"mimikatz.exe"}
    assert "never seen on this host" in found["mimikatz.exe"] and found["mimikatz.exe"][-1] == NAME_ONLY


@pytest.mark.clock
@pytest.mark.django_db
def test_usual_names_from_a_names_only_agent_are_not_news(trained):
    results = fleet.ingest([stories.snapshot("laptop-raj", [], legacy=True),
                            stories.snapshot("laptop-ana", [{"name": "mimikatz.exe", "exe": "C:\\ProgramData\\m.exe",
                                                             "username": "ana", "parent": "explorer.exe"}])])
    found = stories.flagged(results)
    # A rich agent's verdict does not claim to rest on the name alone.
    assert set(found) == {"mimikatz.exe"} and NAME_ONLY not in found["mimikatz.exe"]

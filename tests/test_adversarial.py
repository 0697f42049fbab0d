"""The adversarial fleet generator: deterministic, and its ordinary fleet is quiet for a good detector."""
import pytest
from django.utils import timezone

from tests import adversarial


def test_the_same_arguments_tell_the_same_story():
    first = [p for p, _ in zip(adversarial.build(days=2).snapshots(), range(200))]
    again = [p for p, _ in zip(adversarial.build(days=2).snapshots(), range(200))]
    assert first == again
    assert [p for p, _ in zip(adversarial.build(days=2, seed=12).snapshots(), range(200))] != first


def test_pids_are_distinct_within_a_snapshot():
    for payload, _ in adversarial.build(days=1).snapshots():
        pids = [p["pid"] for p in payload["processes"]]
        assert len(pids) == len(set(pids)), payload["hostname"]


@pytest.mark.slow
@pytest.mark.django_db
def test_ordinary_fleet_is_quiet_and_new_software_is_learned(admin_user):
    fleet = adversarial.build(days=3, end=timezone.now(), stories=["new-software"])
    tally = adversarial.replay(fleet, user=admin_user)
    flagged, total = tally[""]
    assert total > 2000 and flagged <= total * 0.002, tally
    # Flagged in the install hours, quiet after the press: about half the rows.
    flagged, total = tally["new_software"]
    assert total and 0 < flagged < total, tally

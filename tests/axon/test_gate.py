"""The promotion gate's judgement, as a pure function: the flags a candidate and the active model raise on the
same recent ordinary rows, per host, decide whether the candidate is held back and which hosts to name."""
from __future__ import annotations

from collections import Counter

from axon.detector.gate import GATE_ABSOLUTE, gate_judge

ROWS = Counter({"web-1": 1000, "web-2": 1000, "db-1": 1000, "build-01": 1000})


def test_a_candidate_that_flags_what_the_active_model_flags_goes_live():
    flags = Counter({"web-1": 2, "db-1": 1})
    assert gate_judge(flags, flags, ROWS) == (False, [])


def test_a_candidate_that_flags_much_more_across_the_fleet_is_held_back_naming_the_worst_hosts():
    active = Counter({"web-1": 1})
    candidate = Counter({"web-1": 40, "web-2": 60, "db-1": 50, "build-01": 10})
    held, worst = gate_judge(candidate, active, ROWS)
    assert held and worst == ["web-2", "db-1", "web-1"]  # most beyond the active model first, three at most


def test_one_odd_host_alone_does_not_hold_back_the_fleets_model():
    """A stolen key's listing, a machine mid-reinstall: the host is named, the model still goes live."""
    candidate = Counter({"build-01": 400})
    held, worst = gate_judge(candidate, Counter(), ROWS)
    assert not held and worst == ["build-01"]


def test_the_margin_is_absolute_as_well_as_relative():
    """From nothing flagged, a doubling means nothing: it takes more than GATE_ABSOLUTE of the rows."""
    total = sum(ROWS.values())
    just_under = Counter({h: int(GATE_ABSOLUTE * total / len(ROWS)) - 1 for h in ROWS})
    assert gate_judge(just_under, Counter(), ROWS) == (False, [])
    well_over = Counter({h: n * 3 for h, n in just_under.items()})
    assert gate_judge(well_over, Counter(), ROWS)[0]

"""axon.detector.severity on plain values: the rule that ranks alerts when every score is 1.00, and says why."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from axon.detector.severity import severity

NOW = datetime(2026, 11, 11, 15, 0, tzinfo=UTC)
BASE = {"risk": "low", "risk_reasons": [], "reasons": ["never seen on this host"], "score": 1.0, "threshold": 0.9,
        "hosts": 1, "last_seen": NOW - timedelta(minutes=5), "now": NOW}


def judged(**changes):
    return severity(**{**BASE, **changes})


def test_high_risk_is_high_and_ranks_first_whatever_the_score():
    risky = judged(risk="high", risk_reasons=["runs from a temporary or world-writable folder (/tmp/x)"], score=0.91)
    assert risky.level == "high" and risky.rank < judged(reasons=["a", "b", "c"]).rank
    assert risky.reasons[0] == "high risk: runs from a temporary or world-writable folder (/tmp/x)"
    two = judged(risk="high", risk_reasons=["a", "b"])
    assert two.rank < risky.rank and two.reasons[0] == "high risk: a (and 1 more)"


def test_several_signals_or_a_wide_margin_is_medium_else_low():
    assert judged().level == "low"
    assert judged(reasons=["never seen on this host", "seen on 0 of 20 hosts"]).level == "medium"
    assert judged(threshold=0.75).level == "medium"  # 0.25 past the threshold
    assert judged(threshold=None).level == "low"  # no threshold known: the score alone says nothing


def test_among_equals_more_signals_then_margin_then_fewer_hosts_then_recency_rank_higher():
    assert judged(reasons=["a", "b", "c"]).rank < judged(reasons=["a", "b"]).rank
    assert judged(threshold=0.85).rank < judged(threshold=0.9).rank
    assert judged(hosts=1).rank < judged(hosts=4).rank
    assert judged(last_seen=NOW - timedelta(minutes=1)).rank < judged(last_seen=NOW - timedelta(hours=3)).rank


def test_the_reasons_say_it_in_words():
    words = judged(hosts=3, last_seen=NOW - timedelta(hours=2, minutes=10)).reasons
    assert words == ["1 signal from the model", "score 1.00, 0.10 past the model's threshold of 0.90",
                     "the same program is flagged on 3 hosts", "last seen 2 hours ago"]
    assert judged(hosts=1, last_seen=NOW).reasons[-2:] == ["on this host only", "last seen just now"]

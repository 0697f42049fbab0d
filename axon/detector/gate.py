"""The promotion gate's judgement on flag counts per host; axon/services/gate.py gathers the counts."""
from __future__ import annotations

from collections import Counter

# A candidate that flags this much more of recent ordinary data than the active model is held back.
GATE_ABSOLUTE = 0.005
GATE_RELATIVE = 2.0


def gate_judge(candidate: Counter[str], active: Counter[str], rows: Counter[str]) -> tuple[bool, list[str]]:
    """(held back, the hosts where the candidate flags most beyond the active model).

    A candidate that flags much more of recent ordinary data than the active model is held back,
    unless one host alone makes the difference: then that host is odd (a stolen key's listing, a
    machine mid-reinstall), not the model, and it must not hold back every model of the fleet.
    """
    def over(hosts: list[str]) -> bool:
        n = sum(rows[h] for h in hosts)
        c, a = sum(candidate[h] for h in hosts) / n, sum(active[h] for h in hosts) / n
        return c > max(a * GATE_RELATIVE, a + GATE_ABSOLUTE)

    excess = sorted((h for h in rows if candidate[h] > active[h]), key=lambda h: (active[h] - candidate[h], h))
    if not over(list(rows)):
        return False, []
    rest = [h for h in rows if h != excess[0]] if excess else list(rows)
    return (not rest or over(rest)), excess[:3]

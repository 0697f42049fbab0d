"""The one parser of rate settings: the log-in limits (django-ratelimit) and the panic button's sliding windows."""
from __future__ import annotations

import re
from datetime import timedelta

# django-ratelimit's syntax, COUNT/[NUMBER]UNIT (1/5m, 10/h, 100/30s; no unit: seconds).
_RATE = re.compile(r"([0-9]+)/([0-9]*)([smhd]?)", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, timedelta]:
    """'1/5m' → (1, 5 minutes). Raises ValueError naming the rate."""
    match = _RATE.fullmatch(rate.strip()) if isinstance(rate, str) else None
    count, number, unit = match.groups() if match else ("0", "", "")
    seconds = int(number or 1) * _UNIT_SECONDS[unit.lower()]
    if int(count) < 1 or seconds < 1 or not (number or unit):
        raise ValueError(f"{rate!r} is not a rate such as 1/5m or 10/h (count/[number]s|m|h|d)")
    return int(count), timedelta(seconds=seconds)

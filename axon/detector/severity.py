"""How urgently an alert needs a person, in words: the order of the alerts workspace.

Pure: no Django. The model's score saturates (nearly every flag scores 1.00), so it cannot rank
alerts by itself. Severity ranks by what a person would look at first, in this order:

1. risk: a high-risk alert (see axon.detector.risk) is high severity, more risk reasons first;
2. how many independent signals the model gave (never seen on this host, rare across hosts, ...);
3. how far the score is past the model's threshold;
4. how many hosts flag the same program: one host alone is more suspicious than a rollout;
5. how recently it was seen.

An alert without high risk is medium when the model gave several signals or the score is well
past the threshold, low otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

HIGH, MEDIUM, LOW = "high", "medium", "low"
LEVELS = (HIGH, MEDIUM, LOW)
MEDIUM_SIGNALS = 2  # two independent reasons from the model
MEDIUM_MARGIN = 0.2  # this far past the threshold on the score's 0-1 scale


@dataclass(frozen=True)
class Severity:
    level: str
    reasons: list[str]
    rank: tuple  # sorts worst first


def severity(*, risk: str, risk_reasons: list[str], reasons: list[str], score: float | None,
             threshold: float | None, hosts: int, last_seen: datetime | None, now: datetime) -> Severity:
    signals = len(reasons)
    margin = (score - threshold) if score is not None and threshold is not None else None
    if risk == HIGH:
        level = HIGH
    elif signals >= MEDIUM_SIGNALS or (margin is not None and margin >= MEDIUM_MARGIN):
        level = MEDIUM
    else:
        level = LOW
    words: list[str] = []
    if risk == HIGH:
        more = f" (and {len(risk_reasons) - 1} more)" if len(risk_reasons) > 1 else ""
        words.append(f"high risk: {risk_reasons[0] if risk_reasons else 'see the risk reasons'}{more}")
    words.append(f"{signals} signal{'s' if signals != 1 else ''} from the model")
    if margin is not None:
        words.append(f"score {score:.2f}, {abs(margin):.2f} {'past' if margin >= 0 else 'below'} "
                     f"the model's threshold of {threshold:.2f}")
    elif score is not None:
        words.append(f"score {score:.2f}")
    words.append("on this host only" if hosts <= 1 else f"the same program is flagged on {hosts} hosts")
    age = None if last_seen is None else max(0.0, (now - last_seen).total_seconds())
    if age is not None:
        words.append(f"last seen {_ago(age)}")
    rank = (LEVELS.index(level), -len(risk_reasons), -signals, -round(margin or 0.0, 2), hosts,
            age if age is not None else float("inf"))
    return Severity(level=level, reasons=words, rank=rank)


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"

"""The seam through which ingestion is scored: telemetry stores what arrives, a model above it judges.

axon registers its scorer in AxonConfig.ready; telemetry knows nothing of it. With no scorer
registered, or one that cannot score yet, records are stored unscored.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Observation:
    host: str
    os: str
    name: str
    exe: str
    parent: str
    user: str
    hour: int
    cpu: float | None
    mem_mib: float | None
    script: str = ""  # what an interpreter runs (telemetry.normalize.command_parts)
    args: str = ""  # normalized argument tokens, space-separated
    parent_gone: bool = False  # the parent was named from the host's recent snapshots: it had exited
    names_only: bool = False  # the agent sent process names only (a legacy body)
    # Memory across snapshots (axon/detector/norms.py): this program's streak above its CPU norm in the
    # host's previous stored snapshot, and the position of this row's snapshot in the batch
    # (from 1; 0: the row is not part of a whole snapshot).
    prior_streak: int = 0
    snapshot: int = 0


@dataclass
class Verdicts:
    model_number: int | None  # the number of the model version that judged them; None: unscored
    scores: list[float | None] = field(default_factory=list)
    flagged: list[bool | None] = field(default_factory=list)
    reasons: list[list[str]] = field(default_factory=list)
    streaks: list[int] = field(default_factory=list)  # kept with each record: the next snapshot's prior
    reborn: list[bool] = field(default_factory=list)  # the row's host came back as another machine


class Scorer(Protocol):
    def __call__(self, rows: list[Observation]) -> Verdicts: ...


# The alert key of a flagged observation: (host, normalized name, normalized path, parent, script) -> key.
AlertKey = Callable[[str, str, str, str, str], str]

_scorer: Scorer | None = None
_alert_key: AlertKey | None = None


def register(scorer: Scorer, *, alert_key: AlertKey | None = None) -> None:
    global _scorer, _alert_key
    _scorer, _alert_key = scorer, alert_key


def alert_key(host: str, name: str, exe: str, parent: str, script: str) -> str | None:
    """The key the model above groups, triages and approves this observation by; None with no model registered."""
    return _alert_key(host, name, exe, parent, script) if _alert_key is not None else None


def observations_score(rows: list[Observation]) -> Verdicts:
    return _scorer(rows) if _scorer is not None else Verdicts(model_number=None)


# Called inside ingestion's transaction with the record rows just stored and {endpoint id: hostname}:
# axon registers the alerts it tells people about. A listener must be cheap (ingestion waits for it)
# and leave its work for after the commit.
stored_listeners: list[Callable[[list[dict], dict[int, str]], None]] = []


def records_stored(rows: list[dict], hostnames: dict[int, str]) -> None:
    for listener in stored_listeners:
        listener(rows, hostnames)

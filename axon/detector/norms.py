"""Per-host norms the detector judges against, beside the fleet view of ``axon/detector/features.py``. Pure numpy.

**Resources.** A program's CPU is judged against its own history *on this host* (and, when
the host has enough of it, at this hour of the day), falling back to the pool of the hosts
of the same OS while the host has too little history of the program. A pooled norm hides
a miner called ``java`` on a build host where ``java`` is busy every day; a per-host norm
does not, and a per-hour norm keeps a nightly job that is busy at its usual hour quiet.

A single busy snapshot is ordinary (a compiler, a build); staying far above the norm over
consecutive snapshots is not. The memory across snapshots is a *streak*: per row, how many
consecutive snapshots of this host, this one included, the program was above its norm.
Ingestion hands the model the streak each program had in the host's previous stored snapshot
(``ObservationBatch.prior_streak``) and stores the new one, so the memory costs one indexed
read per batch and a small integer per record. Several snapshots of one host in one batch
are chained here, in the order of ``ObservationBatch.snapshot``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass
class NormParams:
    min_host_obs: int = 24  # observations of a program on a host before its own norm replaces the pool
    min_hour_obs: int = 3  # observations at one hour of the day before that hour's norm counts
    busy_hour_points: float = 5.0  # an hour this much busier than the all-day mean is a busy hour
    above_sds: float = 2.0  # "far above": beyond mean + this many sd of the norm...
    above_points: float = 25.0  # ...and at least this many percentage points above its mean
    sustained_snapshots: int = 3  # consecutive snapshots far above the norm that make news


class ResourceNorms:
    """CPU and memory norms per (host, program), and the hours of the day a program is clearly busier. Picklable."""

    def __init__(self, params: NormParams | None = None) -> None:
        self.params = params or NormParams()
        # (host, name) -> (observations, cpu mean, cpu sd, mem mean, mem sd)
        self.host: dict[tuple[str, str], tuple[int, float, float, float, float]] = {}
        # (host, name, hour) -> cpu mean, only where it is busy_hour_points above the all-day mean:
        # elsewhere the all-day norm stands, and the model stays small.
        self.busy_hour: dict[tuple[str, str, int], float] = {}

    @classmethod
    def from_combos(cls, host: list[str], name: list[str], *, count: np.ndarray, cpu_sum: np.ndarray,
                    cpu_sq: np.ndarray, mem_sum: np.ndarray, mem_sq: np.ndarray, hour_count: np.ndarray,
                    hour_cpu: np.ndarray, params: NormParams | None = None) -> ResourceNorms:
        """From the window's combos: their totals, and their count and CPU sum at each hour of the day (n, 24)."""
        self = cls(params)
        p = self.params
        keys, group = _programs(host, name, count)
        if not keys:
            return self
        sums = np.zeros((len(keys), 5))
        np.add.at(sums, group.rows, np.column_stack([count, cpu_sum, cpu_sq, mem_sum, mem_sq])[group.take])
        per_hour_n, per_hour_cpu = np.zeros((len(keys), 24)), np.zeros((len(keys), 24))
        np.add.at(per_hour_n, group.rows, hour_count[group.take])
        np.add.at(per_hour_cpu, group.rows, hour_cpu[group.take])
        for j in np.flatnonzero(sums[:, 0] >= p.min_host_obs).tolist():
            n, cs, cq, ms, mq = sums[j].tolist()
            cm, mm = cs / n, ms / n
            self.host[keys[j]] = (int(n), cm, _sd(cq, n, cm), mm, _sd(mq, n, mm))
            hour_n = per_hour_n[j]
            busy = (hour_n >= p.min_hour_obs) & (per_hour_cpu[j] >= (cm + p.busy_hour_points) * np.maximum(hour_n, 1))
            for hr in np.flatnonzero(busy).tolist():
                self.busy_hour[(*keys[j], hr)] = float(per_hour_cpu[j, hr] / hour_n[hr])
        return self

    def lookup(self, host: list[str], name: list[str], hour: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per row: (own, cpu mean, cpu sd, mem mean, mem sd, cpu mean at this hour); own False → use the pool."""
        none = (0.0,) * 6
        seen: dict[tuple[str, str, int], tuple[float, ...]] = {}
        rows = []
        for key in zip(host, name, hour.tolist()):
            row = seen.get(key)
            if row is None:
                norm = self.host.get(key[:2])
                row = seen[key] = none if norm is None else (1.0, *norm[1:], self.busy_hour.get(key, norm[1]))
            rows.append(row)
        out = np.array(rows, dtype=np.float64).reshape(len(host), 6)
        return (out[:, 0] > 0, *(out[:, j] for j in range(1, 6)))


@dataclass
class _Groups:
    take: np.ndarray  # the combo rows that count
    rows: np.ndarray  # for each of them, its program's row


def _programs(host: list[str], name: list[str], count: np.ndarray,
              only: set[str] | None = None) -> tuple[list[tuple[str, str]], _Groups]:
    """The distinct (host, name) of the combos with a positive count (on the hosts in `only`, if given)."""
    index: dict[tuple[str, str], int] = {}
    take, rows = [], []
    for i, c in enumerate(np.asarray(count).tolist()):
        if c > 0 and (only is None or host[i] in only):
            take.append(i)
            rows.append(index.setdefault((host[i], name[i]), len(index)))
    return list(index), _Groups(np.array(take, dtype=np.int64), np.array(rows, dtype=np.int64))


def _sd(sq: float, n: float, mean: float) -> float:
    return math.sqrt(max(0.0, sq / n - mean ** 2))


def streaks(host: list[str], name: list[str], snapshot: np.ndarray, *, cpu: np.ndarray, above: np.ndarray,
            prior: np.ndarray) -> np.ndarray:
    """Consecutive snapshots (this one included) each row's program has been above its norm on its host.

    The streak belongs to the program's busiest row of a snapshot; its other rows (an ordinary
    process of the same name beside a miner) get 0, so they are never flagged for its streak.
    ``prior``: the program's streak in the host's previous stored snapshot. Rows of later
    snapshots of the same host in this batch (a larger ``snapshot`` number) carry on from the
    earlier ones instead.
    """
    out = np.zeros(len(host), dtype=np.int64)
    if not above.any():
        return out
    busiest: dict[tuple[int, str, str], int] = {}  # (snapshot, host, name) -> its busiest row above the norm
    for i in np.flatnonzero(above).tolist():
        key = (int(snapshot[i]), host[i], name[i])
        if key not in busiest or cpu[i] > cpu[busiest[key]]:
            busiest[key] = i
    previous: dict[tuple[int, str], int] = {}  # (snapshot, host) -> the host's snapshot before it in this batch
    if snapshot.min() != snapshot.max():
        last: dict[str, int] = {}
        for g, h in sorted(set(zip(snapshot.tolist(), host))):
            if h in last:
                previous[(g, h)] = last[h]
            last[h] = g
    for (g, h, n), i in sorted(busiest.items()):
        before = previous.get((g, h))
        out[i] = (int(prior[i]) if before is None else int(out[busiest[(before, h, n)]]) if (before, h, n) in busiest
                  else 0) + 1
    return out


# Programs that mean a person is at the keyboard (or at a remote one): a login session, a
# shell, a remote-access tool. An unknown account running one of these is the strongest news.
INTERACTIVE = frozenset({
    "login", "su", "sudo", "sshd", "sshd-session", "ssh", "scp", "sftp-server", "tmux", "screen", "mosh-server",
    "bash", "sh", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "python", "python3", "perl", "ruby",
    "cmd.exe", "powershell.exe", "pwsh.exe", "pwsh", "wsmprovhost.exe", "winrshost.exe", "psexesvc.exe",
    "rdpclip.exe", "mstsc.exe", "anydesk", "anydesk.exe", "teamviewer", "teamviewer.exe", "x11vnc", "vncserver",
    "winvnc.exe", "nc", "ncat", "netcat", "socat", "telnet",
})


@dataclass
class AccountParams:
    roaming_hosts: int = 3  # an account seen on this many hosts logs in around (an admin): not news on one more
    interactive: float = 0.9  # novelty of an unknown account running a session, a shell or a remote tool
    other: float = 0.6  # ... running anything else


class AccountSets:
    """Which personal accounts each host has run anything under in the window. Picklable.

    Shared service accounts (``root``, ``SYSTEM``, ``www-data``) are no news anywhere; a host
    too young to know its own users judges none of them; an account the window saw on
    ``roaming_hosts`` hosts or more is an admin's and no news on one more.
    """

    def __init__(self, params: AccountParams | None = None) -> None:
        self.params = params or AccountParams()
        self.host_users: dict[str, frozenset[str]] = {}
        self.roaming: frozenset[str] = frozenset()
        self.mature: frozenset[str] = frozenset()  # hosts with history enough to know their own users

    @classmethod
    def from_pairs(cls, host_user: set[tuple[str, str]], mature: set[str],
                   params: AccountParams | None = None) -> AccountSets:
        self = cls(params)
        self.mature = frozenset(mature)
        users: dict[str, set[str]] = defaultdict(set)
        hosts: dict[str, set[str]] = defaultdict(set)
        for h, u in host_user:
            if u:
                users[h].add(u)
                hosts[u].add(h)
        self.host_users = {h: frozenset(us) for h, us in users.items()}
        self.roaming = frozenset(u for u, hs in hosts.items() if len(hs) >= self.params.roaming_hosts)
        return self

    def novelty(self, host: list[str], name: list[str], user: list[str], shared: frozenset[str]) -> np.ndarray:
        """Per row: the novelty of the account on its host (0 when it is known, shared, roaming or the host young)."""
        out = np.zeros(len(host))
        p = self.params
        for i, u in enumerate(user):
            if not u or u in shared or u in self.roaming or host[i] not in self.mature:
                continue
            if u not in self.host_users.get(host[i], ()):
                out[i] = p.interactive if name[i].lower() in INTERACTIVE else p.other
        return out


@dataclass
class ScheduleParams:
    min_runs: int = 4  # observations before a program's hours count as a schedule
    max_hours: int = 2  # a schedule: every observation within this many adjacent hours of the day
    min_distance: int = 2  # hours away from every usual hour that make a run off schedule
    min_host_hours: int = 20  # the host reports at this many hours of the day (so absence means something)
    novelty: float = 0.6


class Schedules:
    """Programs that run on a tight schedule on a host (a nightly or weekly job), and their hours. Picklable.

    A job seen at least ``min_runs`` times, always within ``max_hours`` adjacent hours of the
    day, on a host that reports around the clock, runs on a schedule; the same job far from
    those hours is news. A weekly or monthly job seen fewer times than that is no schedule yet,
    and an hour next to the usual ones (a clock change, a slow night) is not far.
    """

    def __init__(self, params: ScheduleParams | None = None) -> None:
        self.params = params or ScheduleParams()
        self.hours: dict[tuple[str, str], frozenset[int]] = {}

    @classmethod
    def from_combos(cls, host: list[str], name: list[str], hour_count: np.ndarray, around_the_clock: set[str],
                    params: ScheduleParams | None = None) -> Schedules:
        """From the window's combos' counts at each hour of the day, shape (n, 24)."""
        self = cls(params)
        p = self.params
        total = hour_count.sum(axis=1) if len(host) else np.zeros(0)
        keys, group = _programs(host, name, total, only=around_the_clock)
        if not keys:
            return self
        by_hour = np.zeros((len(keys), 24))
        np.add.at(by_hour, group.rows, hour_count[group.take])
        # A schedule spans at most max_hours hours of the day: only those few are looked at one by one.
        few = (by_hour.sum(axis=1) >= p.min_runs) & ((by_hour > 0).sum(axis=1) <= p.max_hours)
        for j in np.flatnonzero(few).tolist():
            hours = set(np.flatnonzero(by_hour[j] > 0).tolist())
            if _window_start(hours, p.max_hours) is not None:
                self.hours[keys[j]] = frozenset(hours)
        return self

    def novelty(self, host: list[str], name: list[str], hour: np.ndarray) -> np.ndarray:
        out = np.zeros(len(host))
        if not self.hours:
            return out
        p = self.params
        for i, hr in enumerate(hour.tolist()):
            usual = self.hours.get((host[i], name[i]))
            if usual is not None and min(_circular(hr, u) for u in usual) >= p.min_distance:
                out[i] = p.novelty
        return out

    def describe(self, host: str, name: str, hour: int) -> str:
        usual = self.hours.get((host, name), frozenset())
        first = _window_start(usual, self.params.max_hours) or 0
        span = "–".join(f"{h:02d}:00" for h in sorted(usual, key=lambda h: (h - first) % 24))
        return f"{name} runs at {span} UTC on this host, not at {hour:02d}:00"


def _circular(a: int, b: int) -> int:
    d = abs(a - b) % 24
    return min(d, 24 - d)


def _window_start(hours: frozenset[int] | set[int], width: int) -> int | None:
    """The first hour of a run of `width` adjacent hours of the day that holds all of `hours`, if any."""
    return next((s for s in sorted(hours) if all((h - s) % 24 < width for h in hours)), None)


REBORN = "\x00reborn:"  # a host judged as young: no history is kept under this name


@dataclass
class RebornParams:
    staple_share: float = 0.9  # a program in this share of a host's snapshots is one of its staples
    common_share: float = 0.9  # ...unless this share of the hosts of its OS run it too (a base program)
    min_staples: int = 2  # staples a host needs before their absence says anything
    present_share: float = 0.5  # a snapshot with fewer of its host's staples than this is another machine


def staples(host_name: dict[tuple[str, str], int], host_snapshots: dict[str, int],
            share_of_hosts: dict[tuple[str, str], float], params: RebornParams | None = None) -> dict[str, frozenset[str]]:
    """What each host runs in (nearly) every snapshot and most of its peers do not: what it is recognised by.

    ``share_of_hosts[(host, name)]``: the share of the hosts of the host's OS that run the name.
    A reinstall keeps the OS's base programs, so they say nothing of which machine this is.
    """
    p = params or RebornParams()
    found: dict[str, set[str]] = defaultdict(set)
    for (h, n), obs in host_name.items():
        if obs >= p.staple_share * host_snapshots.get(h, 0) > 0 and share_of_hosts.get((h, n), 1.0) < p.common_share:
            found[h].add(n)
    return {h: frozenset(ns) for h, ns in found.items() if len(ns) >= p.min_staples}


def judged_hosts(host: list[str], os: list[str], name: list[str], snapshot: np.ndarray, *, host_os: dict[str, str],
                 host_staples: dict[str, frozenset[str]], params: RebornParams | None = None,
                 names_only: list[bool] | None = None) -> list[str]:
    """The host each row is judged as: itself, or a young host with no history when its snapshot
    shows another machine under the old name: another OS, or most of the programs the host was
    recognised by gone. (Programs added to a host never make it another machine: its staples are
    still there.) A listing that says too little to tell (names only, or fewer programs than the
    host's staples: what an agent sends when its listing half-fails, or what a stolen key sends to
    make the host's history vouch for nothing) never makes a host another machine.

    A reinstalled host's new programs are then judged with its peers, not flagged one by one as
    never seen on it, and its old history vouches for nothing it runs now.
    """
    p = params or RebornParams()
    seen: dict[tuple[int, str], set[str]] = defaultdict(set)
    group_os: dict[tuple[int, str], str] = {}
    terse: set[tuple[int, str]] = set()
    for g, h, o, n, bare in zip(snapshot.tolist(), host, os, name, names_only or [False] * len(host)):
        if g and h in host_os:  # 0: rows picked out of snapshots (a re-scoring), which say nothing of the mix
            seen[(g, h)].add(n)
            group_os.setdefault((g, h), o)
            if bare:
                terse.add((g, h))
    reborn = set()
    for key, names in seen.items():
        h = key[1]
        before, now = host_os[h], group_os[key]
        usual = host_staples.get(h) or frozenset()
        if key in terse or len(names) < len(usual):
            continue
        if (before and now and before != now) or (usual and len(usual & names) < p.present_share * len(usual)):
            reborn.add(key)
    if not reborn:
        return host
    return [REBORN + h if (g, h) in reborn else h for g, h in zip(snapshot.tolist(), host)]

"""The feature contract of the anomaly detector: one definition for training and scoring.

Pure numpy and the standard library (no Django). The Django side aggregates the training
window in the database into a :class:`ComboTable` (one row per distinct
``(host, name, exe, parent, user)`` with the count and the sums of cpu and memory, and the
count and cpu sum at each hour of the day),
wraps it in a :class:`WindowData`, and hands observations to score as an
:class:`ObservationBatch`. Names, paths and parents are already normalized
(``telemetry.normalize``); users are raw account names and are folded here.

:class:`Baseline` is the window reduced to the aggregates the features are computed
against; a trained model keeps it and computes the features of a batch with
:meth:`Baseline.features`. Every feature is a property of the observation *relative to the
window*, never to the training time, so a model scores a snapshot the same way whenever it
arrives.

Features (``FEATURE_NAMES``), each in [0, 1] except the two z-scores in [-1, 1]:

``host_rarity``
    How rarely the name runs on this host: the share ``f`` of the host's snapshots it was
    observed in (observations / snapshots, capped at 1) on a log scale,
    ``0.95 * min(1, -log10(f) / 4)``; exactly 1.0 only when ``f == 0``. A host with little
    history (fewer than ``young_host_snapshots`` snapshots or fewer than 24 distinct hours)
    borrows the fleet's view: ``f = max(f_host, (1 - w) * f_fleet)`` with ``w`` its
    maturity in [0, 1] and ``f_fleet`` the mean share over the hosts of the same OS.
``fleet_rarity``
    ``1 - k / N``: the name ran on ``k`` of the ``N`` hosts of the same OS (1.0: on none).
``exe_rarity`` / ``parent_rarity`` / ``user_rarity``
    How usual this path / parent / user is *for this name*: the larger of its share of the
    name's observations on this host and its mean share over the hosts of the same OS that
    run the name, on the same log scale (1.0 exactly when never seen with this name). An
    empty value (agent did not report it, parent of an ordinary program not found) is neutral
    (0.0); an orphaned shell or interpreter has the parent ``<exited>``, a value like any other.
    Users seen on a single host, or personal in the sense below, are folded into one
    ``<personal>`` class first.
``cpu_z`` / ``mem_z``
    ``(x - mean) / sd`` against this name's norm over the hosts of the same OS, clipped to
    +-10 and divided by 10. The sd has a floor (``cpu_floor``, ``mem_floor`` and 10 % of the
    mean) so a flat-lined process does not turn noise into a huge z.

Nothing seen in the window ever reaches 1.0 on a rarity feature, so a never-seen name,
path, parent or user sits in a corner ordinary data never occupies; the model in
``axon/detector/training.py`` turns that corner into an explicit novelty term.

Personal accounts: a username is *shared* (``root``, ``SYSTEM``, ``www-data``...) when it is
seen on at least two hosts and, for most of the names it runs that run on two hosts or
more, it runs them on every host that runs them. ``alice`` running ``explorer.exe`` on 2 of
10 Windows hosts is personal; ``SYSTEM`` running ``svchost.exe`` everywhere is shared. A
username unknown to the window (a new host's user) is personal.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from axon.detector.lineage import CommandTable
from axon.detector.norms import AccountSets, ResourceNorms, Schedules, judged_hosts, staples

FEATURE_VERSION = 3  # 2: accounts, norms, schedules (detect-a) / approvals, command lines (detect-b); 3: both
FEATURE_NAMES: tuple[str, ...] = (
    "host_rarity",
    "fleet_rarity",
    "exe_rarity",
    "parent_rarity",
    "user_rarity",
    "cpu_z",
    "mem_z",
)
HOST, FLEET, EXE, PARENT, USER, CPU_Z, MEM_Z = range(len(FEATURE_NAMES))

PERSONAL = "<personal>"
ALL_OS = "*"  # fleet statistics over every host, for an OS the window has no host of

# (host, name, exe, parent, script), all normalized; a 4-tuple (or script None) is an approval made
# before scripts were told apart (see axon/detector/approved.py).
ApprovalKey = tuple[str | None, ...]


def _strings(values: Iterable) -> list[str]:
    return ["" if v is None else str(v) for v in values]


SUM_COLUMNS = 5 + 24 + 24  # see ComboTable.from_sums


@dataclass
class ComboTable:
    """One row per distinct (host, name, exe, parent, user) of the window, with its count and CPU sum
    at each hour of the day (``hour_count``, ``hour_cpu``: shape (rows, 24)).

    The hour is not a key: a program seen all day is one row, not 24, so the cost of training
    follows what runs where, not how many hours it ran.
    """

    host: list[str]
    name: list[str]
    exe: list[str]
    parent: list[str]
    user: list[str]
    count: np.ndarray
    cpu_sum: np.ndarray
    cpu_sq: np.ndarray
    mem_sum: np.ndarray
    mem_sq: np.ndarray
    hour_count: np.ndarray
    hour_cpu: np.ndarray

    def __post_init__(self) -> None:
        for attr in ("host", "name", "exe", "parent", "user"):
            setattr(self, attr, _strings(getattr(self, attr)))
        n = len(self.host)
        self.count = np.asarray(self.count, dtype=np.int64).reshape(-1)
        for attr in ("cpu_sum", "cpu_sq", "mem_sum", "mem_sq"):
            setattr(self, attr, np.asarray(getattr(self, attr), dtype=np.float64).reshape(-1))
        self.hour_count = np.asarray(self.hour_count, dtype=np.int64).reshape(n, 24)
        self.hour_cpu = np.asarray(self.hour_cpu, dtype=np.float64).reshape(n, 24)
        lengths = {len(getattr(self, a)) for a in ("name", "exe", "parent", "user", "count",
                                                  "cpu_sum", "cpu_sq", "mem_sum", "mem_sq")}
        if lengths - {n}:
            raise ValueError(f"ComboTable columns differ in length: {sorted(lengths | {n})}")

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> ComboTable:
        """Rows per hour of the day, in field order: host, name, exe, parent, user, hour, count, cpu_sum, cpu_sq,
        mem_sum, mem_sq; rows of one (host, name, exe, parent, user) at several hours become one row."""
        index: dict[tuple[str, ...], int] = {}
        sums: list[np.ndarray] = []
        for row in rows:
            if len(row) != 11:
                raise ValueError(f"a combo row has 11 fields, got {len(row)}")
            i = index.setdefault(tuple(_strings(row[:5])), len(index))
            if i == len(sums):
                sums.append(np.zeros(SUM_COLUMNS))
            hour = int(row[5])
            sums[i][:5] += np.asarray(row[6:], dtype=np.float64)
            sums[i][5 + hour] += float(row[6])
            sums[i][29 + hour] += float(row[7])
        return cls.from_sums(list(index), np.array(sums).reshape(len(index), SUM_COLUMNS))

    @classmethod
    def from_sums(cls, keys: list[tuple], sums: np.ndarray) -> ComboTable:
        """`keys`: (host, name, exe, parent, user) per row; `sums`: shape (rows, 53), the count, cpu_sum,
        cpu_sq, mem_sum and mem_sq, then the count at each hour of the day, then the CPU sum at each."""
        text: list[list[str]] = [list(c) for c in zip(*keys)] if keys else [[], [], [], [], []]
        host, name, exe, parent, user = text
        return cls(host=host, name=name, exe=exe, parent=parent, user=user, count=sums[:, 0], cpu_sum=sums[:, 1],
                   cpu_sq=sums[:, 2], mem_sum=sums[:, 3], mem_sq=sums[:, 4], hour_count=sums[:, 5:29],
                   hour_cpu=sums[:, 29:53])

    def hour_rows(self, i: int) -> list[tuple]:
        """Row `i` as from_rows takes it, a row per hour it was seen (squares and memory shared out by count)."""
        rows = []
        for hour in np.flatnonzero(self.hour_count[i] > 0).tolist():
            share = self.hour_count[i, hour] / self.count[i]
            rows.append((self.host[i], self.name[i], self.exe[i], self.parent[i], self.user[i], hour,
                         int(self.hour_count[i, hour]), float(self.hour_cpu[i, hour]), self.cpu_sq[i] * share,
                         self.mem_sum[i] * share, self.mem_sq[i] * share))
        return rows

    def __len__(self) -> int:
        return len(self.host)

    @property
    def records(self) -> int:
        return int(self.count.sum())


@dataclass
class WindowData:
    combos: ComboTable
    host_snapshots: dict[str, int]  # snapshots per host in the window
    host_os: dict[str, str]  # "windows" | "darwin" | "linux" | other
    days: int | None = None  # the window's length, for messages only
    commands: CommandTable | None = None  # distinct (host, name, argument tokens) with counts (axon/detector/lineage.py)


@dataclass
class ObservationBatch:
    """Observations to score (e.g. one snapshot), normalized like the window."""

    host: list[str]
    os: list[str]
    name: list[str]
    exe: list[str]
    parent: list[str]
    user: list[str]
    hour: np.ndarray
    cpu: np.ndarray
    mem: np.ndarray  # MiB
    # From the command line (telemetry.normalize.command_parts); empty when there is none.
    script: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    # The parent was named from the host's recent snapshots: it had exited when this one was taken.
    parent_gone: list[bool] = field(default_factory=list)
    names_only: list[bool] = field(default_factory=list)  # the agent sends names only (legacy body)
    # The memory across snapshots (axon/detector/norms.py): each row's streak above its CPU norm in the
    # host's previous stored snapshot, and which snapshot of the batch the row belongs to
    # (numbered from 1 in time order), so several snapshots of one host in one batch chain up;
    # 0 for rows that are not whole snapshots (training, re-scoring flags).
    prior_streak: np.ndarray | None = None
    snapshot: np.ndarray | None = None

    def __post_init__(self) -> None:
        for attr in ("host", "os", "name", "exe", "parent", "user", "script", "args"):
            setattr(self, attr, _strings(getattr(self, attr)))
        n = len(self.host)
        self.script = self.script or [""] * n
        self.args = self.args or [""] * n
        self.parent_gone = list(self.parent_gone) or [False] * n
        self.names_only = list(self.names_only) or [False] * n
        self.hour = np.asarray(self.hour, dtype=np.int64).reshape(-1)
        self.cpu = np.nan_to_num(np.asarray(self.cpu, dtype=np.float64).reshape(-1))
        self.mem = np.nan_to_num(np.asarray(self.mem, dtype=np.float64).reshape(-1))
        chain = [np.zeros(n, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64).reshape(-1)
                 for v in (self.prior_streak, self.snapshot)]
        self.prior_streak, self.snapshot = chain
        if {len(self.os), len(self.name), len(self.exe), len(self.parent), len(self.user),
                len(self.hour), len(self.cpu), len(self.mem), len(self.script), len(self.args),
                len(self.parent_gone), len(self.names_only), *map(len, chain)} - {n}:
            raise ValueError("ObservationBatch columns differ in length")

    def __len__(self) -> int:
        return len(self.host)

    def keys(self) -> list[ApprovalKey]:
        return list(zip(self.host, self.name, self.exe, self.parent))


@dataclass
class FeatureParams:
    young_host_snapshots: int = 48  # snapshots before a host's own history replaces the fleet's view
    rarity_decades: float = 4.0  # a share of 10**-4 or less is as rare as seen things get
    seen_cap: float = 0.95  # the top of the rarity scale for anything seen; 1.0 means never seen
    z_clip: float = 10.0
    cpu_floor: float = 0.5  # percentage points
    mem_floor: float = 1.0  # MiB
    relative_floor: float = 0.1  # sd floor as a share of the mean


@dataclass
class Features:
    """The feature matrix of a batch plus the facts the reasons and the novelty term need."""

    X: np.ndarray  # (n, len(FEATURE_NAMES))
    support: np.ndarray  # observations of the name on the hosts of the same OS
    host_obs: np.ndarray  # observations of the name on this host
    host_snapshots: np.ndarray  # snapshots of this host in the window
    host_maturity: np.ndarray  # w in [0, 1]
    hosts_with_name: np.ndarray  # k: hosts of the same OS that ran the name
    os_hosts: np.ndarray  # N: hosts of the same OS in the window
    os_label: list[str]  # the OS the fleet view was taken over ("*" = whole fleet)
    cpu_mean: np.ndarray
    cpu_sd: np.ndarray
    mem_mean: np.ndarray
    mem_sd: np.ndarray
    folded_user: list[str] = field(default_factory=list)
    # The host each row is judged as: itself, or a young host with no history when the snapshot
    # shows another machine under its name (axon/detector/norms.py: judged_hosts).
    judged_host: list[str] = field(default_factory=list)
    # The resource norm each row is judged against (axon/detector/norms.py): this host's own when it
    # has enough history of the program (own_norm), else the pool above; and at this hour.
    own_norm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    norm_cpu_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    norm_cpu_sd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    norm_mem_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    norm_mem_sd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hour_cpu_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def novel(self, column: int) -> np.ndarray:
        """Rows at the novelty end of a rarity feature: never seen in the window."""
        return self.X[:, column] >= 1.0


def _rarity(share: float, decades: float, cap: float) -> float:
    if share <= 0.0:
        return 1.0
    if share >= 1.0:
        return 0.0
    return cap * min(1.0, -math.log10(share) / decades)


def _per_host_name(c: ComboTable) -> tuple[dict[tuple[str, str], list[float]], dict[str, dict[tuple[str, str, str], int]]]:
    """Per (host, name): [observations, cpu sum, cpu sq, mem sum, mem sq]; and per "exe" | "parent" | "user",
    the observations of each (host, name, value)."""
    counts = c.count.tolist()
    cpu_sum, cpu_sq = c.cpu_sum.tolist(), c.cpu_sq.tolist()
    mem_sum, mem_sq = c.mem_sum.tolist(), c.mem_sq.tolist()
    host_name: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0])
    raw: dict[str, dict[tuple[str, str, str], int]] = {k: defaultdict(int) for k in ("exe", "parent", "user")}
    for i, host in enumerate(c.host):
        n = counts[i]
        if n <= 0:
            continue
        name = c.name[i]
        acc = host_name[(host, name)]
        acc[0] += n
        acc[1] += cpu_sum[i]
        acc[2] += cpu_sq[i]
        acc[3] += mem_sum[i]
        acc[4] += mem_sq[i]
        raw["exe"][(host, name, c.exe[i])] += n
        raw["parent"][(host, name, c.parent[i])] += n
        raw["user"][(host, name, c.user[i])] += n
    return host_name, raw


def _host_hours(c: ComboTable) -> dict[str, int]:
    """The hours of the day each host was seen at all."""
    host_index: dict[str, int] = {}
    for host, n in zip(c.host, c.count.tolist()):
        if n > 0:
            host_index.setdefault(host, len(host_index))
    seen = np.zeros((len(host_index), 24), dtype=bool)
    if len(c):
        rows = np.flatnonzero(c.count > 0)
        np.logical_or.at(seen, np.array([host_index[c.host[i]] for i in rows], dtype=np.int64),
                         c.hour_count[rows] > 0)
    return {h: int(seen[j].sum()) for h, j in host_index.items()}


class Baseline:
    """The training window reduced to what the features are computed against. Picklable."""

    def __init__(self, params: FeatureParams | None = None) -> None:
        self.params = params or FeatureParams()
        self.host_snapshots: dict[str, int] = {}
        self.host_maturity: dict[str, float] = {}
        self.host_os: dict[str, str] = {}
        self.os_hosts: dict[str, int] = {}
        self.shared_users: frozenset[str] = frozenset()
        self.host_name: dict[tuple[str, str], int] = {}
        # (os, name) -> (hosts, observations, mean share of snapshots, cpu mean, cpu sd, mem mean, mem sd)
        self.name_stats: dict[tuple[str, str], tuple[int, int, float, float, float, float, float]] = {}
        # "exe" | "parent" | "user" -> {(host, name, value): share} and {(os, name, value): mean share}
        self.host_share: dict[str, dict[tuple[str, str, str], float]] = {}
        self.fleet_share: dict[str, dict[tuple[str, str, str], float]] = {}
        self.norms = ResourceNorms()
        self.accounts = AccountSets()
        self.schedules = Schedules()
        self.staples: dict[str, frozenset[str]] = {}  # what each host always runs: to recognise it by

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_window(cls, window: WindowData, params: FeatureParams | None = None) -> Baseline:
        self = cls(params)
        c = window.combos
        self.norms = ResourceNorms.from_combos(c.host, c.name, count=c.count, cpu_sum=c.cpu_sum, cpu_sq=c.cpu_sq,
                                               mem_sum=c.mem_sum, mem_sq=c.mem_sq, hour_count=c.hour_count,
                                               hour_cpu=c.hour_cpu)
        host_name, raw = _per_host_name(c)
        host_hours = _host_hours(c)
        self._hosts(window, host_name, host_hours)
        self.schedules = Schedules.from_combos(c.host, c.name, c.hour_count,
                                               around_the_clock={h for h, hs in host_hours.items() if hs >= 20})
        self.shared_users = self._shared_users(raw["user"])
        self.accounts = AccountSets.from_pairs({(h, u) for h, _, u in raw["user"]},
                                               mature={h for h, w in self.host_maturity.items() if w >= 1.0})
        folded: dict[tuple[str, str, str], int] = defaultdict(int)
        for (h, n, u), cnt in raw["user"].items():
            folded[(h, n, self.fold_user(u))] += cnt
        raw["user"] = folded

        self.host_name = {k: int(v[0]) for k, v in host_name.items()}
        self._name_stats(host_name)
        self.staples = staples(self.host_name, self.host_snapshots, {
            (h, n): self.name_stats[(self.host_os[h], n)][0] / self.os_hosts[self.host_os[h]] for h, n in host_name})
        self._shares(raw)
        return self

    def _hosts(self, window: WindowData, host_name: dict[tuple[str, str], list[float]],
               host_hours: dict[str, int]) -> None:
        """Each host's snapshots, OS and maturity, and the hosts of each OS."""
        p = self.params
        hosts = sorted({h for h, _ in host_name} | {h for h, s in window.host_snapshots.items() if s > 0})
        biggest: dict[str, int] = defaultdict(int)
        for (h, _), acc in host_name.items():
            biggest[h] = max(biggest[h], int(acc[0]))
        for h in hosts:
            snaps = int(window.host_snapshots.get(h, 0)) or biggest[h] or 1
            self.host_snapshots[h] = snaps
            self.host_os[h] = window.host_os.get(h, "") or ""
            self.host_maturity[h] = min(1.0, snaps / max(1, p.young_host_snapshots), host_hours.get(h, 0) / 24.0)
        for h in hosts:
            self.os_hosts[self.host_os[h]] = self.os_hosts.get(self.host_os[h], 0) + 1
        self.os_hosts[ALL_OS] = len(hosts)

    def _name_stats(self, host_name: dict[tuple[str, str], list[float]]) -> None:
        """The fleet view per OS (and over the whole fleet): every host that runs a name counts once."""
        stats: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0])
        for (h, n), acc in host_name.items():
            freq = min(1.0, acc[0] / self.host_snapshots[h])
            for o in {self.host_os[h], ALL_OS}:
                s = stats[(o, n)]
                s[0] += 1
                s[1] += acc[0]
                s[2] += freq
                s[3] += acc[1]
                s[4] += acc[2]
                s[5] += acc[3]
                s[6] += acc[4]
        for (o, n), s in stats.items():
            obs = s[1]
            cpu_mean = s[3] / obs
            mem_mean = s[5] / obs
            cpu_sd = math.sqrt(max(0.0, s[4] / obs - cpu_mean ** 2))
            mem_sd = math.sqrt(max(0.0, s[6] / obs - mem_mean ** 2))
            self.name_stats[(o, n)] = (int(s[0]), int(obs), s[2] / self.os_hosts[o],
                                       cpu_mean, cpu_sd, mem_mean, mem_sd)

    def _shares(self, raw: dict[str, dict[tuple[str, str, str], int]]) -> None:
        """How often each path, parent and user goes with a name: on its host, and on average over the fleet."""
        for kind, table in raw.items():
            host_share: dict[tuple[str, str, str], float] = {}
            fleet_sum: dict[tuple[str, str, str], float] = defaultdict(float)
            for (h, n, v), cnt in table.items():
                if not v:
                    continue
                share = cnt / self.host_name[(h, n)]
                host_share[(h, n, v)] = share
                for o in {self.host_os[h], ALL_OS}:
                    fleet_sum[(o, n, v)] += share
            self.host_share[kind] = host_share
            self.fleet_share[kind] = {(o, n, v): s / self.name_stats[(o, n)][0] for (o, n, v), s in fleet_sum.items()}

    @staticmethod
    def _shared_users(host_name_user: dict[tuple[str, str, str], int]) -> frozenset[str]:
        user_hosts: dict[str, set[str]] = defaultdict(set)
        name_hosts: dict[str, set[str]] = defaultdict(set)
        user_name_hosts: dict[tuple[str, str], set[str]] = defaultdict(set)
        for h, n, u in host_name_user:
            if not u:
                continue
            user_hosts[u].add(h)
            name_hosts[n].add(h)
            user_name_hosts[(u, n)].add(h)
        shared = set()
        for u, hosts in user_hosts.items():
            if len(hosts) < 2:
                continue
            multi = covered = 0
            for (uu, n), hs in user_name_hosts.items():
                if uu != u or len(name_hosts[n]) < 2:
                    continue
                multi += 1
                covered += len(hs) == len(name_hosts[n])
            if multi and covered / multi > 0.5:
                shared.add(u)
        return frozenset(shared)

    def fold_user(self, user: str) -> str:
        if not user or user in self.shared_users:
            return user
        return PERSONAL

    def _without_own(self, host: str, name: str, o: str, *, k: int, big_n: int, f_fleet: float) -> tuple[int, int, float]:
        """The fleet view of a name (hosts running it, hosts, mean share) without this host's own history."""
        if o != ALL_OS and self.host_os.get(host) != o:
            return k, big_n, f_fleet
        own = self.host_name.get((host, name), 0)
        own_share = min(1.0, own / self.host_snapshots[host]) if own else 0.0
        others = big_n - 1
        if others <= 0:
            return 0, 0, 0.0
        return k - (own > 0), others, max(0.0, (f_fleet * big_n - own_share) / others)

    # -- features ---------------------------------------------------------------------------
    def fleet_os(self, os_name: str) -> str:
        return os_name if self.os_hosts.get(os_name) else ALL_OS

    def _fleet_row(self, batch: ObservationBatch, i: int, host: str) -> tuple[list[float], tuple, str, str]:
        """Row i's five rarity features, the facts behind them, the OS it was judged over and its folded user;
        `host` is the host it is judged as."""
        p = self.params
        decades, cap = p.rarity_decades, p.seen_cap
        name = batch.name[i]
        o = self.fleet_os(batch.os[i] or self.host_os.get(host, ""))
        user = self.fold_user(batch.user[i])
        snaps = self.host_snapshots.get(host, 0)
        w = self.host_maturity.get(host, 0.0)
        host_obs = self.host_name.get((host, name), 0)
        ns = self.name_stats.get((o, name))
        f_host = min(1.0, host_obs / snaps) if snaps else 0.0
        f_fleet = ns[2] if ns else 0.0
        k = ns[0] if ns else 0
        big_n = self.os_hosts.get(o, 0)
        if host != batch.host[i]:  # another machine under an old name: its old life vouches for nothing
            k, big_n, f_fleet = self._without_own(batch.host[i], name, o, k=k, big_n=big_n, f_fleet=f_fleet)
        row = [0.0] * 5
        row[HOST] = _rarity(max(f_host, (1.0 - w) * f_fleet), decades, cap)
        row[FLEET] = 1.0 - k / big_n if big_n else 1.0
        for j, (kind, value) in enumerate((("exe", batch.exe[i]), ("parent", batch.parent[i]), ("user", user))):
            if not value:
                continue  # not reported: neutral
            share = max(self.host_share[kind].get((host, name, value), 0.0),
                        self.fleet_share[kind].get((o, name, value), 0.0))
            row[EXE + j] = _rarity(share, decades, cap)
        aux = (ns[1] if ns else 0, host_obs, snaps, w, k, big_n, *(ns[3:] if ns else (0.0, 0.0, 0.0, 0.0)))
        return row, aux, o, user

    def features(self, batch: ObservationBatch) -> Features:
        p = self.params
        n = len(batch)
        X = np.zeros((n, len(FEATURE_NAMES)))
        info = np.zeros((n, 10))  # support, host_obs, snaps, maturity, k, N, cpu m/sd, mem m/sd
        os_label = [""] * n
        folded_user = [""] * n
        cache: dict[tuple, tuple] = {}
        assert batch.snapshot is not None  # filled in by ObservationBatch
        hosts = judged_hosts(batch.host, batch.os, batch.name, batch.snapshot, host_os=self.host_os,
                             host_staples=self.staples, names_only=batch.names_only)
        for i in range(n):
            key = (hosts[i], batch.os[i], batch.name[i], batch.exe[i], batch.parent[i], batch.user[i])
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._fleet_row(batch, i, hosts[i])
            X[i, :5] = hit[0]
            info[i] = hit[1]
            os_label[i] = hit[2]
            folded_user[i] = hit[3]

        known = info[:, 0] > 0
        cpu_m, cpu_sd, mem_m, mem_sd = info[:, 6], info[:, 7], info[:, 8], info[:, 9]
        cpu_sd_eff = np.maximum.reduce([cpu_sd, np.full(n, p.cpu_floor), p.relative_floor * np.abs(cpu_m)])
        mem_sd_eff = np.maximum.reduce([mem_sd, np.full(n, p.mem_floor), p.relative_floor * np.abs(mem_m)])
        X[:, CPU_Z] = np.where(known, np.clip((batch.cpu - cpu_m) / cpu_sd_eff, -p.z_clip, p.z_clip) / p.z_clip, 0.0)
        X[:, MEM_Z] = np.where(known, np.clip((batch.mem - mem_m) / mem_sd_eff, -p.z_clip, p.z_clip) / p.z_clip, 0.0)
        own, h_cpu_m, h_cpu_sd, h_mem_m, h_mem_sd, hr_cpu_m = self.norms.lookup(hosts, batch.name, batch.hour)

        def floored(sd: np.ndarray, mean: np.ndarray, floor: float) -> np.ndarray:
            return np.maximum.reduce([sd, np.full(n, floor), p.relative_floor * np.abs(mean)])

        norm_cpu_m = np.where(own, h_cpu_m, cpu_m)
        norm_mem_m = np.where(own, h_mem_m, mem_m)
        hour_cpu_m = np.where(own, hr_cpu_m, cpu_m)
        return Features(
            judged_host=hosts, own_norm=own, norm_cpu_mean=norm_cpu_m, norm_mem_mean=norm_mem_m, hour_cpu_mean=hour_cpu_m,
            norm_cpu_sd=np.where(own, floored(h_cpu_sd, h_cpu_m, p.cpu_floor), cpu_sd_eff),
            norm_mem_sd=np.where(own, floored(h_mem_sd, h_mem_m, p.mem_floor), mem_sd_eff),
            X=X, support=info[:, 0], host_obs=info[:, 1], host_snapshots=info[:, 2],
            host_maturity=info[:, 3], hosts_with_name=info[:, 4].astype(np.int64),
            os_hosts=info[:, 5].astype(np.int64), os_label=os_label,
            cpu_mean=cpu_m, cpu_sd=cpu_sd_eff, mem_mean=mem_m, mem_sd=mem_sd_eff, folded_user=folded_user,
        )


def approved_mask(batch: ObservationBatch, approved) -> np.ndarray:
    """Rows an approval covers (axon/detector/approved.py says what one covers)."""
    from axon.detector.approved import ApprovedSet

    if not isinstance(approved, ApprovedSet):
        approved = ApprovedSet(approved)
    return approved.mask(batch)

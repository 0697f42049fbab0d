"""Training and scoring of the process anomaly detector. Pure numpy and scikit-learn.

The detector combines two scores on one scale, and one threshold chosen from the data:

* **Isolation Forest** over the features of ``axon/detector/features.py``. Its training set is drawn
  from the window's combos weighted by their counts (``sample_size`` draws, so the cost grows
  with combos, not records); each drawn observation gets a cpu and memory figure drawn from
  its combo's mean and sd. The score is scikit-learn's ``2 ** (-E[h(x)] / c(n))`` in (0, 1);
  the fitted forest is compiled into flat numpy arrays (:class:`CompiledForest`) that score a
  batch of all trees at once, independent of the scikit-learn version that trained it.
* **Explicit novelty** ``v`` in [0, 1]. An Isolation Forest cannot extrapolate: a value beyond
  the training range lands in the same leaf as the most extreme training point, so "never
  seen" would look no worse than "seen once". The features put anything never seen at exactly
  1.0, a value no training row has, and the novelty term reads that corner directly:

  - a name never seen on this host (for a young host: on no host of its OS): ``1 - k/N``,
    ``k`` of the ``N`` hosts of the same OS run it, so a name the whole fleet runs is no news;
  - a path, parent or user never seen with a known name: ``s / (s + novelty_support)``, ``s``
    the name's observations in the fleet, so a new path for a name seen twice is weak news
    and a new path for ``svchost.exe`` is strong news;
  - cpu above the name's norm by more than ``cpu_sigmas`` sd: the excess over ``cpu_excess``
    percentage points (a 90 % spike of a process that idles at 0.5 % is news; noise is not).

  The parts combine as a noisy-or and map onto the forest's scale piecewise linearly:
  ``v = 0 -> 0``, ``v = 0.5 -> threshold``, ``v = 1 -> 1``. So ``score = max(forest, g(v))``
  and a row is flagged when ``score >= threshold``: either the forest isolates it more easily
  than anything seen repeatedly in training, or at least half-strength novelty.

**Threshold**: no contamination quota. Every training row has novelty 0 (it is in the
window), so the threshold is set on the forest's scores: the highest score of any training
row whose ``(host, name, exe, parent, user)`` key was observed at least ``min_repeat`` times
(a nightly job, a tool used a few times a month), plus ``margin``. Scores of every combo and
of the weighted sample are both considered, so rare-but-repeated combos count. A snapshot
of ordinary processes can therefore come out with no flag at all.

**Command lines** (``axon/detector/lineage.py``): argument tokens never seen with a program add a
novelty part weighed by how settled its command lines are; parents that exited are named by
ingestion (the reasons say so), an orphaned shell or interpreter has the parent ``<exited>``.

**Approvals**: what an operator approved is never flagged; ``axon/detector/approved.py`` says what an
approval covers (the program under any ordinary parent, its own install folder's helpers, an
interpreter with its script only). The same name from another path is judged on its own. The
Django side keeps flagged-and-unapproved observations out of later windows, so an attack never
becomes ordinary by retraining.

The hour of day is not a feature: ordinary desktop programs run at night at a few percent
per hour and nightly jobs drift, so hour-rarity cost false positives without catching
anything the other features miss.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np
from sklearn.ensemble import IsolationForest

from axon.detector.approved import ApprovedSet
from axon.detector.features import (
    CPU_Z,
    EXE,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FLEET,
    HOST,
    MEM_Z,
    PARENT,
    USER,
    ApprovalKey,
    Baseline,
    ComboTable,
    FeatureParams,
    Features,
    ObservationBatch,
    WindowData,
)
from axon.detector.lineage import CommandBaseline, usual_parents
from axon.detector.norms import NormParams, streaks
from telemetry.normalize import EXITED


def resource_parts(batch: ObservationBatch, f: Features, p: TrainParams) -> dict[str, np.ndarray]:
    """The novelty parts of CPU use: a spike far beyond the pool's norm, and staying far above the norm.

    The norm is the host's own for the program when it has enough history (else its OS pool);
    staying above it counts only above what is usual at this hour too, so a job that is busy
    at its usual hours is not news.
    """
    known = f.support > 0
    # Where the host has a norm of its own, one busy snapshot is what programs do (a build, a
    # compile); only staying above it is news. Judged by the pool, a far spike is news at once.
    ceiling = f.norm_cpu_mean + p.cpu_sigmas * f.norm_cpu_sd
    spike = np.where(known, np.clip((batch.cpu - ceiling) / p.cpu_excess, 0.0, 1.0), 0.0)
    cpu = np.where(f.own_norm, 0.0, spike)
    n = p.norms
    # Far above the all-day norm, and clearly above what is usual at this hour: an hour's
    # mean is trusted before its spread is (a month holds only ~30 snapshots of one hour).
    usual = np.maximum(f.norm_cpu_mean, f.hour_cpu_mean)
    above = known & (batch.cpu > f.norm_cpu_mean + n.above_sds * f.norm_cpu_sd) & (batch.cpu - usual >= n.above_points)
    assert batch.prior_streak is not None and batch.snapshot is not None  # filled in by ObservationBatch
    streak = streaks(f.judged_host, batch.name, batch.snapshot, cpu=batch.cpu, above=above, prior=batch.prior_streak)
    sustained = np.where(streak >= n.sustained_snapshots, np.minimum(1.0, streak / (2.0 * n.sustained_snapshots)), 0.0)
    # "spike" is for the reasons only: a row flagged for something else says its CPU stood out too
    return {"cpu": cpu, "sustained": sustained, "streak": streak, "spike": spike}


class InsufficientData(ValueError):
    """The window is too small to learn what is ordinary."""


@dataclass
class TrainParams:
    n_estimators: int = 100
    max_samples: int = 256
    random_state: int = 0
    min_records: int = 50
    min_processes: int = 10
    sample_size: int = 50_000  # observations drawn from the combos (weighted by count) to fit on
    min_repeat: int = 2  # observations of a (host, name, exe, parent, user) key that make it ordinary
    margin: float = 0.02  # added to the highest forest score of anything seen repeatedly
    max_threshold: float = 0.95
    novelty_support: float = 2.0  # observations of a name before a new path/parent/user for it is news
    cpu_sigmas: float = 6.0
    cpu_excess: float = 100.0  # percentage points above (mean + cpu_sigmas sd) for full cpu novelty
    mem_sigmas: float = 6.0  # for the reason only
    norms: NormParams = field(default_factory=NormParams)
    features: FeatureParams = field(default_factory=FeatureParams)


@dataclass
class ScoreResult:
    scores: np.ndarray  # float, higher = more anomalous, 0..1
    flagged: np.ndarray  # bool
    reasons: list[list[str]]  # per row; non-empty for flagged rows
    approved: np.ndarray | None = None  # bool: rows matching an approved key exactly
    streak: np.ndarray | None = None  # int: consecutive snapshots above the CPU norm, this one included
    reborn: np.ndarray | None = None  # bool: the row's snapshot shows another machine under its host's name


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean depth of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class CompiledForest:
    """An Isolation Forest as flat arrays; scores like ``-IsolationForest.score_samples``."""

    def __init__(self, forest: IsolationForest) -> None:
        trees = forest.estimators_
        width = max(t.tree_.node_count for t in trees)
        shape = (len(trees), width)
        self.feature = np.zeros(shape, dtype=np.intp)
        self.threshold = np.full(shape, np.inf)
        self.left = np.zeros(shape, dtype=np.intp)
        self.right = np.zeros(shape, dtype=np.intp)
        self.value = np.zeros(shape)
        depth_max = 0
        for t, (est, feats) in enumerate(zip(trees, forest.estimators_features_)):
            tree = est.tree_
            m = tree.node_count
            leaf = tree.children_left == -1
            idx = np.arange(m)
            self.feature[t, :m] = np.where(leaf, 0, np.asarray(feats)[np.maximum(tree.feature, 0)])
            self.threshold[t, :m] = np.where(leaf, np.inf, tree.threshold)
            self.left[t, :m] = np.where(leaf, idx, tree.children_left)
            self.right[t, :m] = np.where(leaf, idx, tree.children_right)
            depth = np.zeros(m)
            for node in range(m):  # children always come after their parent
                if not leaf[node]:
                    depth[tree.children_left[node]] = depth[tree.children_right[node]] = depth[node] + 1
            self.value[t, :m] = np.where(leaf, depth + _average_path_length(tree.n_node_samples), 0.0)
            depth_max = max(depth_max, int(depth.max()))
        self.steps = depth_max
        self.n_features = forest.n_features_in_
        self.normalizer = float(len(trees) * _average_path_length(np.array([forest._max_samples]))[0])

    def score(self, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).astype(np.float64)  # trees split float32 values
        out = np.empty(len(X))
        rows_t = np.arange(self.feature.shape[0])[:, None]
        for start in range(0, len(X), chunk):
            part = X[start:start + chunk]
            cols = np.arange(len(part))[None, :]
            node = np.zeros((self.feature.shape[0], len(part)), dtype=np.intp)
            for _ in range(self.steps):
                go_left = part[cols, self.feature[rows_t, node]] <= self.threshold[rows_t, node]
                node = np.where(go_left, self.left[rows_t, node], self.right[rows_t, node])
            depth = self.value[rows_t, node].sum(axis=0)
            out[start:start + chunk] = 2.0 ** (-depth / self.normalizer) if self.normalizer else 1.0
        return out


class DetectorModel:
    """A trained detector: the window's baseline, the compiled forest, the threshold, the approvals."""

    def __init__(self, *, baseline: Baseline, forest: CompiledForest, threshold: float,
                 approved: frozenset[ApprovalKey], params: TrainParams, stats: dict,
                 commands: CommandBaseline | None = None, usual_parent: dict | None = None) -> None:
        self.feature_version = FEATURE_VERSION
        self.feature_names = tuple(FEATURE_NAMES)
        self.baseline = baseline
        self.forest = forest
        self.threshold = float(threshold)
        self.approved = frozenset(approved)
        self.approvals = ApprovedSet(self.approved)
        self.commands = commands or CommandBaseline(None, {})
        self.usual_parent: dict[tuple[str, str], str] = usual_parent or {}
        self.params = params
        self.stats = stats

    def check_compatible(self) -> None:
        """Raise ValueError when this model was trained on another feature contract than the code's."""
        if self.feature_version != FEATURE_VERSION or tuple(self.feature_names) != FEATURE_NAMES:
            raise ValueError(
                f"The model was trained with feature version {self.feature_version} "
                f"({', '.join(self.feature_names)}) but this code computes version {FEATURE_VERSION} "
                f"({', '.join(FEATURE_NAMES)}); retrain the model before scoring with it.")

    def novelty(self, batch: ObservationBatch, f: Features) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        X = f.X
        parts = {"name": np.where(X[:, HOST] >= 1.0, X[:, FLEET], 0.0)}
        weight = f.support / (f.support + p.novelty_support)
        for label, col in (("exe", EXE), ("parent", PARENT), ("user", USER)):
            parts[label] = np.where(X[:, col] >= 1.0, weight, 0.0)
        parts.update(resource_parts(batch, f, p))
        hosts = f.judged_host
        parts["account"] = self.baseline.accounts.novelty(hosts, batch.name, batch.user, self.baseline.shared_users)
        parts["schedule"] = self.baseline.schedules.novelty(hosts, batch.name, batch.hour)
        # Argument tokens never seen with the program, weighed by how settled its command lines are.
        parts["args"], _ = self.commands.novelty(batch.host, batch.os, batch.name, batch.args)
        keep = np.ones(len(batch))
        for label, v in parts.items():
            if label not in ("streak", "spike"):  # not parts of the novelty: for the reasons
                keep *= 1.0 - v
        return 1.0 - keep, parts

    def _combine(self, forest_score: np.ndarray, novelty: np.ndarray) -> np.ndarray:
        t = self.threshold
        mapped = np.where(novelty <= 0.5, 2.0 * novelty * t, t + (2.0 * novelty - 1.0) * (1.0 - t))
        return np.clip(np.maximum(forest_score, mapped), 0.0, 1.0)

    def score(self, batch: ObservationBatch) -> ScoreResult:
        self.check_compatible()
        f = self.baseline.features(batch)
        if f.X.shape[1] != self.forest.n_features:
            raise ValueError(f"The model's forest expects {self.forest.n_features} features, "
                             f"the batch has {f.X.shape[1]}; retrain the model.")
        forest_score = self.forest.score(f.X) if len(batch) else np.zeros(0)
        novelty, parts = self.novelty(batch, f)
        scores = self._combine(forest_score, novelty)
        approved = self.approvals.mask(batch)
        # An approval vouches for what a program is, never for it burning the machine: an
        # approved row is still flagged on its resource parts alone, with those reasons only.
        resource = 1.0 - (1.0 - parts["cpu"]) * (1.0 - parts["sustained"])
        by_resource = approved & (resource >= 0.5)
        flagged = ((scores >= self.threshold) & ~approved) | by_resource
        reasons: list[list[str]] = [[] for _ in range(len(batch))]
        for i in np.flatnonzero(flagged):
            reasons[i] = self._reasons(batch, f, parts, forest_score, int(i), resource_only=bool(by_resource[i]))
        return ScoreResult(scores=scores, flagged=flagged, reasons=reasons, approved=approved,
                           streak=parts["streak"].astype(np.int64),
                           reborn=np.zeros(len(batch), dtype=bool) if f.judged_host is batch.host else
                           np.fromiter((j != h for j, h in zip(f.judged_host, batch.host)), dtype=bool, count=len(batch)))

    def _reasons(self, batch: ObservationBatch, f: Features, parts: dict, forest_score: np.ndarray,
                 i: int, *, resource_only: bool = False) -> list[str]:
        X = f.X
        name = batch.name[i]
        os_label = f.os_label[i]
        hosts_label = "hosts" if os_label == "*" else f"{os_label} hosts"
        where = "on this host" if f.own_norm[i] else f"on {hosts_label}"
        out = []
        if parts["sustained"][i] > 0:
            out.append(f"CPU {batch.cpu[i]:.0f}% for {int(parts['streak'][i])} snapshots "
                       f"vs usual {f.norm_cpu_mean[i]:.0f}% {where}")
        elif parts["spike"][i] > 0:
            out.append(f"CPU {batch.cpu[i]:.0f}% vs usual {f.norm_cpu_mean[i]:.1f}% {where}")
        if resource_only:
            return out
        if X[i, HOST] >= 1.0:
            out.append("never seen on this host")
            out.append(f"seen on {f.hosts_with_name[i]} of {f.os_hosts[i]} {hosts_label}")
        if parts["schedule"][i] > 0:
            out.append(self.baseline.schedules.describe(f.judged_host[i], name, int(batch.hour[i])))
        if parts["account"][i] > 0:
            out.append(f"account {batch.user[i]} never seen on this host")
        if parts["exe"][i] > 0:
            out.append(f"unusual path for {name}")
        if parts["parent"][i] > 0:
            parent, usual = batch.parent[i], self.usual_parent.get((batch.host[i], name), "")
            usually = (f"{name} usually runs orphaned" if usual == EXITED else
                       f"{name} usually starts from {usual}" if usual else f"{name} has no usual parent here")
            if batch.parent_gone[i]:
                out.append(f"parent {parent} exited; {usually}")
            elif parent == EXITED:
                out.append(f"orphaned: the parent of {name} exited before any snapshot named it; {usually}")
            else:
                out.append(f"unusual parent {parent} for {name}")
        if parts["user"][i] > 0:
            out.append(f"unusual user {batch.user[i]} for {name}")
        if parts["args"][i] > 0:
            new, _ = self.commands.unusual(batch.host[i], batch.os[i], name, batch.args[i])
            script = batch.script[i]
            if script and any(t in script for t in new):
                out.append(f"{name} runs a script never seen with it: {script[:60]}")
            shown = [t for t in new if len(t) > 1 and any(c.isalnum() for c in t)] or new
            out.append(f"unusual command line for {name}: {', '.join(shown[:8])}")
        if f.support[i] > 0 and batch.mem[i] > f.norm_mem_mean[i] + self.params.mem_sigmas * f.norm_mem_sd[i]:
            out.append(f"memory {batch.mem[i]:.0f} MiB vs usual {f.norm_mem_mean[i]:.0f} MiB {where}")
        if not out:  # the forest alone: say which features made it stand out
            out = _forest_reasons(batch, f, forest_score, i)
        if batch.names_only[i]:
            out.append("judged by name only: this agent does not send paths, parents or users")
        return out


def _forest_reasons(batch: ObservationBatch, f: Features, forest_score: np.ndarray, i: int) -> list[str]:
    X, name = f.X, batch.name[i]
    hosts_label = "hosts" if f.os_label[i] == "*" else f"{f.os_label[i]} hosts"
    out = []
    if X[i, HOST] > 0.5:
        out.append(f"rare on this host ({int(f.host_obs[i])} of {int(f.host_snapshots[i])} snapshots)")
    if X[i, FLEET] > 0.5 and f.hosts_with_name[i]:
        out.append(f"seen on {f.hosts_with_name[i]} of {f.os_hosts[i]} {hosts_label}")
    for label, col, value in (("path", EXE, batch.exe[i]), ("parent", PARENT, batch.parent[i]),
                              ("user", USER, batch.user[i])):
        if X[i, col] > 0.5:
            out.append(f"rare {label} {value} for {name}")
    if abs(X[i, CPU_Z]) > 0.4:
        out.append(f"CPU {batch.cpu[i]:.0f}% vs usual {f.cpu_mean[i]:.1f}%")
    if abs(X[i, MEM_Z]) > 0.4:
        out.append(f"memory {batch.mem[i]:.0f} MiB vs usual {f.mem_mean[i]:.0f} MiB")
    out.append(f"unusual combination for this host (isolation score {forest_score[i]:.2f})")
    return out


def _check_enough(window: WindowData, params: TrainParams) -> None:
    span = f"in the last {window.days} days" if window.days else "in the training window"
    records = window.combos.records
    if records < params.min_records:
        raise InsufficientData(
            f"Only {records} process records {span}; at least {params.min_records} are needed.")
    processes = len(set(window.combos.name))
    if processes < params.min_processes:
        raise InsufficientData(
            f"Only {processes} distinct processes {span}; at least {params.min_processes} are needed.")


def _draw(mean_sum: np.ndarray, sq_sum: np.ndarray, count: np.ndarray, rng: np.random.Generator,
          spread: np.ndarray | None = None) -> np.ndarray:
    """Normal draws around mean_sum / count; the sd from sq_sum and `spread` (the sum the squares go with,
    when the mean is another one, e.g. an hour's), floored at 0."""
    mean = mean_sum / count
    around = (mean if spread is None else spread / count)
    sd = np.sqrt(np.maximum(0.0, sq_sum / count - around ** 2))
    return np.maximum(0.0, rng.normal(mean, sd))


def _training_batch(window: WindowData, keep: np.ndarray, m: int,
                    rng: np.random.Generator) -> tuple[ObservationBatch, np.ndarray]:
    """m observations drawn from the combos by their counts (what the forest learns from), then every combo
    once (for the threshold); and the combo row of each."""
    combos = window.combos
    count = combos.count[keep].astype(np.float64)
    drawn = keep[rng.choice(len(keep), size=m, p=count / count.sum())]
    rows = np.concatenate([drawn, keep])
    # Each drawn observation at an hour drawn from its combo's hours; each combo once at its usual hour.
    by_hour = combos.hour_count[drawn].astype(np.float64)
    cumulative = np.cumsum(by_hour, axis=1) / by_hour.sum(axis=1, keepdims=True)
    drawn_hours = np.minimum((cumulative < rng.random((m, 1))).sum(axis=1), 23)
    hours = np.concatenate([drawn_hours, combos.hour_count[keep].argmax(axis=1)])
    # CPU around the combo's mean at that hour, with its all-day spread; memory from its all-day figures.
    at_hour = combos.hour_count[rows, hours]
    cpu_mean_sum = combos.hour_cpu[rows, hours] / at_hour * combos.count[rows]
    host_os = window.host_os
    batch = ObservationBatch(
        host=[combos.host[i] for i in rows],
        os=[host_os.get(combos.host[i], "") for i in rows],
        name=[combos.name[i] for i in rows], exe=[combos.exe[i] for i in rows],
        parent=[combos.parent[i] for i in rows], user=[combos.user[i] for i in rows],
        hour=hours,
        cpu=_draw(cpu_mean_sum, combos.cpu_sq[rows], combos.count[rows], rng, spread=combos.cpu_sum[rows]),
        mem=_draw(combos.mem_sum[rows], combos.mem_sq[rows], combos.count[rows], rng),
    )
    return batch, rows


def _repeated_ceiling(combos: ComboTable, keep: np.ndarray, rows: np.ndarray, forest_score: np.ndarray,
                      min_repeat: int) -> float:
    """The highest forest score of anything seen repeatedly (min_repeat observations of its key)."""
    key_count: dict[tuple, int] = defaultdict(int)
    for i in keep:
        key_count[(combos.host[i], combos.name[i], combos.exe[i], combos.parent[i], combos.user[i])] += int(combos.count[i])
    repeated = np.fromiter(
        (key_count[(combos.host[i], combos.name[i], combos.exe[i], combos.parent[i], combos.user[i])] >= min_repeat
         for i in rows), dtype=bool, count=len(rows))
    return float(forest_score[repeated].max()) if repeated.any() else float(np.quantile(forest_score, 0.999))


def train(window: WindowData, *, approved: Collection[ApprovalKey] = (),
          params: TrainParams | None = None) -> DetectorModel:
    params = params or TrainParams()
    started = time.perf_counter()
    _check_enough(window, params)
    combos = window.combos
    keep = np.flatnonzero(combos.count > 0)
    baseline = Baseline.from_window(window, params.features)
    rng = np.random.default_rng(params.random_state)

    total = int(combos.count[keep].sum())
    m = int(min(total, params.sample_size))
    batch, rows = _training_batch(window, keep, m, rng)
    feats = baseline.features(batch)
    iforest = IsolationForest(n_estimators=params.n_estimators, max_samples=min(params.max_samples, m),
                              random_state=params.random_state).fit(feats.X[:m])
    forest = CompiledForest(iforest)
    forest_score = forest.score(feats.X)

    ceiling = _repeated_ceiling(combos, keep, rows, forest_score, params.min_repeat)
    threshold = min(params.max_threshold, ceiling + params.margin)

    commands = CommandBaseline(window.commands, window.host_os, params.novelty_support)
    model = DetectorModel(baseline=baseline, forest=forest, threshold=threshold,
                          approved=frozenset(cast(ApprovalKey, tuple(k)) for k in approved), params=params, stats={},
                          commands=commands, usual_parent=usual_parents(combos.host, combos.name, combos.parent,
                                                                        combos.count))
    novelty, _ = model.novelty(batch, feats)
    sample_scores = model._combine(forest_score[:m], novelty[:m])
    qs = (0.5, 0.9, 0.99, 0.999)
    model.stats = {
        "records": total,
        "combos": int(len(keep)),
        "processes": len(set(combos.name[i] for i in keep)),
        "hosts": len(baseline.host_snapshots),
        "hosts_by_os": {o: n for o, n in baseline.os_hosts.items() if o != "*"},
        "shared_users": sorted(baseline.shared_users),
        "score_quantiles": {str(q): float(np.quantile(sample_scores, q)) for q in qs},
        "score_max": float(sample_scores.max()),
        "repeated_max": ceiling,
        "threshold": threshold,
        "training_flag_rate": float((sample_scores >= threshold).mean()),
        "sample_size": m,
        "approved": len(model.approved),
        "command_lines": len(window.commands) if window.commands is not None else 0,
        "feature_version": FEATURE_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "parameters": asdict(params),
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return model

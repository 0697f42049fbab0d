"""Replay a fleetsim scenario through the detector in memory and print the figures that matter.

    python benchmarks/detector_offline.py DIR [--quiet]

DIR holds snapshots.jsonl.gz, labels.jsonl.gz and manifest.json written by
../shared/scenarios/fleetsim.py. No Django, no database: the baseline is aggregated here the
way the database does it (GROUP BY host, name, exe, parent, user, hour with count and sums),
model v1 is trained on it and scores `steady` and `install` snapshot by snapshot; at the panic
button everything v1 flagged is approved except the names the manifest excludes; v2 is trained
on the 30 days before the press, without the flagged-and-unapproved observations, and scores
`after`. This is evaluation code: it reads the labels and the manifest, the detector does not.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axon.detector.features import ComboTable, ObservationBatch, WindowData  # noqa: E402
from axon.detector.lineage import CommandTable  # noqa: E402
from axon.detector.training import DetectorModel, train  # noqa: E402
from telemetry.normalize import (  # noqa: E402
    EXITED,
    command_parts,
    guess_os,
    normalize_exe,
    normalize_name,
    resolve_parents,
)

MIB = 1024 * 1024
PARENT_MEMORY = timedelta(hours=2)  # as telemetry.ingest
PARENT_MEMORY_SNAPSHOTS = 6


class Snapshot:
    __slots__ = ("host", "os", "ts", "phase", "batch", "labels")

    def __init__(self, host, os_name, ts, phase, batch, labels):
        self.host, self.os, self.ts, self.phase, self.batch, self.labels = host, os_name, ts, phase, batch, labels


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def load(directory: Path) -> tuple[dict, list[Snapshot]]:
    manifest = json.loads((directory / "manifest.json").read_text())
    intern: dict[str, str] = {}

    def s(value) -> str:
        value = "" if value is None else str(value)
        return intern.setdefault(value, value)

    snapshots = []
    commands: dict[tuple, tuple[str, str]] = {}
    memory: dict[str, list[tuple[datetime, dict[int, str]]]] = {}

    def command(cmdline, name, os_name) -> tuple[str, str]:
        key = (cmdline, name, os_name)
        if key not in commands:
            script, args = command_parts(cmdline, name, os_name)
            commands[key] = (s(script), s(args))
        return commands[key]

    with gzip.open(directory / "snapshots.jsonl.gz", "rt", encoding="utf-8") as snaps, \
            gzip.open(directory / "labels.jsonl.gz", "rt", encoding="utf-8") as labels:
        for line, label_line in zip(snaps, labels):
            payload = json.loads(line)
            label = json.loads(label_line)
            procs = payload["processes"]
            os_name = guess_os(payload.get("os"), [p.get("name", "") for p in procs])
            ts = _parse_ts(payload["timestamp"])
            names = [s(normalize_name(p["name"], os_name)) for p in procs]
            # Parents as ingestion names them: the snapshot, then the host's recent snapshots (pid memory).
            host_memory = memory.setdefault(payload["hostname"], [])
            host_memory[:] = [(t, m) for t, m in host_memory if ts - PARENT_MEMORY <= t < ts][-PARENT_MEMORY_SNAPSHOTS:]
            remembered: dict[int, str] = {}
            for _, m in host_memory:
                remembered.update(m)
            pids, ppids = [p.get("pid") for p in procs], [p.get("ppid") for p in procs]
            parents, gone = resolve_parents(pids, ppids, names, remembered)
            # A child already named after its parent carries that name on (a long-lived orphan).
            told = {ppid: x for ppid, x in zip(ppids, parents) if ppid and x and x != EXITED}
            host_memory.append((ts, {**told, **{pid: n for pid, n in zip(pids, names) if pid is not None}}))
            n_rows = len(procs)
            parts = [command(p.get("cmdline"), n, os_name) for p, n in zip(procs, names)]
            batch = ObservationBatch(
                host=[s(payload["hostname"])] * n_rows,
                os=[os_name] * n_rows,
                name=names,
                exe=[s(normalize_exe(p.get("exe"), os_name)) for p in procs],
                parent=[s(x) for x in parents], parent_gone=gone,
                user=[s(p.get("username")) for p in procs],
                hour=np.full(n_rows, ts.hour),
                cpu=np.array([float(p.get("cpu_percent") or 0.0) for p in procs]),
                mem=np.array([float(p.get("memory_rss") or 0) / MIB for p in procs]),
                script=[c[0] for c in parts], args=[c[1] for c in parts],
            )
            marks = [""] * n_rows
            for index, kind in label["marks"]:
                marks[index] = kind
            snapshots.append(Snapshot(payload["hostname"], os_name, ts, label["phase"], batch, marks))
    return manifest, snapshots


def aggregate(snapshots: list[Snapshot], exclude: dict[int, np.ndarray] | None = None, days: int = 30) -> WindowData:
    """What the database's GROUP BY hands the trainer; `exclude[id(snapshot)]` masks rows out."""
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0])
    command_counts: Counter = Counter()
    host_snapshots: Counter = Counter()
    host_os: dict[str, str] = {}
    for snap in snapshots:
        b = snap.batch
        host_snapshots[snap.host] += 1
        host_os[snap.host] = snap.os
        skip = exclude.get(id(snap)) if exclude else None
        hour = snap.ts.hour
        for i in range(len(b)):
            if skip is not None and skip[i]:
                continue
            a = acc[(b.host[i], b.name[i], b.exe[i], b.parent[i], b.user[i], hour)]
            cpu, mem = b.cpu[i], b.mem[i]
            a[0] += 1
            a[1] += cpu
            a[2] += cpu * cpu
            a[3] += mem
            a[4] += mem * mem
            if b.args[i]:
                command_counts[(b.host[i], b.name[i], b.args[i])] += 1
    rows = [(*k, *v) for k, v in acc.items()]
    return WindowData(ComboTable.from_rows(rows), dict(host_snapshots), host_os, days=days,
                      commands=CommandTable.from_rows((*k, n) for k, n in command_counts.items()))


def timed_train(window: WindowData, approved=()) -> tuple[DetectorModel, float, float]:
    start = time.perf_counter()
    model = train(window, approved=approved)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    train(window, approved=approved)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return model, seconds, peak / MIB


def score_all(model: DetectorModel, snapshots: list[Snapshot], memory: dict[str, dict[str, int]],
              reborn: dict[str, datetime] | None = None) -> dict[int, tuple]:
    """Score snapshot by snapshot; `memory` carries each host's CPU streaks to its next snapshot, and
    `reborn` notes when the model first saw a host come back as another machine, as ingestion does."""
    out = {}
    for snap in snapshots:
        b = snap.batch
        prior = memory.get(snap.host, {})
        b.prior_streak = np.fromiter((prior.get(n, 0) for n in b.name), dtype=np.int64, count=len(b))
        b.snapshot = np.ones(len(b), dtype=np.int64)  # a whole snapshot
        r = model.score(b)
        streaks: dict[str, int] = {}
        if r.streak is not None:
            for n, s in zip(b.name, r.streak.tolist()):
                if s > streaks.get(n, 0):
                    streaks[n] = s
        memory[snap.host] = streaks
        if reborn is not None and r.reborn is not None and r.reborn.any():
            reborn.setdefault(snap.host, snap.ts)
        out[id(snap)] = (r.flagged, r.reasons, r.scores)
    return out


def pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:.2f}% ({num}/{den})" if den else "n/a (0 rows)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path)
    ap.add_argument("--quiet", action="store_true", help="no false-positive breakdown")
    args = ap.parse_args()

    t0 = time.perf_counter()
    manifest, snapshots = load(args.directory)
    steady_start = _parse_ts(manifest["steady_start"])
    panic_at = _parse_ts(manifest["panic_at"])
    records = sum(len(s.batch) for s in snapshots)
    print(f"scenario {args.directory}: {len(snapshots)} snapshots, {records} process records "
          f"(loaded and normalized in {time.perf_counter() - t0:.1f} s)")

    baseline = [s for s in snapshots if s.ts < steady_start]
    t0 = time.perf_counter()
    window1 = aggregate(baseline)
    agg1 = time.perf_counter() - t0
    v1, train1, mem1 = timed_train(window1)
    print(f"v1: {len(window1.combos)} combos from {window1.combos.records} records (GROUP BY emulation {agg1:.1f} s); "
          f"trained in {train1:.2f} s, peak {mem1:.0f} MiB; threshold {v1.threshold:.3f}")

    pre = [s for s in snapshots if s.phase in ("steady", "install")]
    after = [s for s in snapshots if s.phase == "after"]
    memory: dict[str, dict[str, int]] = {}
    rebirths: dict[str, datetime] = {}
    res1 = score_all(v1, pre, memory, rebirths)

    # The panic button: approve what v1 flagged, minus the names the operator unticked.
    excluded_names = set(manifest.get("exclude_on_panic") or [])
    approved = set()
    for snap in pre:
        flagged = res1[id(snap)][0]
        excluded = {normalize_name(n, snap.os) for n in excluded_names}
        b = snap.batch
        for i in np.flatnonzero(flagged):
            if b.name[i] not in excluded:
                approved.add((b.host[i], b.name[i], b.exe[i], b.parent[i], b.script[i]))
    exclude_rows = {}
    for snap in pre:
        flagged = res1[id(snap)][0]
        b = snap.batch
        keys = list(zip(b.host, b.name, b.exe, b.parent, b.script))
        exclude_rows[id(snap)] = np.array([flagged[i] and keys[i] not in approved for i in range(len(keys))], dtype=bool)
    window_start = panic_at - timedelta(days=30)
    # Training forgets what a host that came back as another machine ran before (telemetry reborn_at).
    history = [s for s in snapshots if window_start <= s.ts < panic_at and s.ts >= rebirths.get(s.host, s.ts)]
    t0 = time.perf_counter()
    window2 = aggregate(history, exclude_rows)
    agg2 = time.perf_counter() - t0
    v2, train2, mem2 = timed_train(window2, approved)
    excluded_count = int(sum(m.sum() for m in exclude_rows.values()))
    print(f"panic: {len(approved)} keys approved, {excluded_count} flagged-unapproved observations kept out")
    print(f"v2: {len(window2.combos)} combos from {window2.combos.records} records (GROUP BY emulation {agg2:.1f} s); "
          f"trained in {train2:.2f} s, peak {mem2:.0f} MiB; threshold {v2.threshold:.3f}")
    res2 = score_all(v2, after, memory)

    # Figures
    fp = Counter()
    fp_rows = Counter()
    ordinary = flagged_ordinary = 0
    install_ordinary = install_fp = 0
    counts = Counter()
    per_attack = defaultdict(lambda: [0, 0])
    latencies = []
    for phase_snaps, results in ((pre, res1), (after, res2)):
        for snap in phase_snaps:
            flagged, reasons, _ = results[id(snap)]
            for i, label in enumerate(snap.labels):
                f = bool(flagged[i])
                if not label:
                    if snap.phase == "install":
                        install_ordinary += 1
                        install_fp += f
                        if f:
                            fp_rows[(snap.phase, snap.batch.name[i], "; ".join(reasons[i]))] += 1
                        continue
                    ordinary += 1
                    flagged_ordinary += f
                    if f:
                        fp[(snap.phase, snap.batch.name[i], "; ".join(reasons[i]))] += 1
                    continue
                counts[(snap.phase, label, "all")] += 1
                counts[(snap.phase, label, "flagged")] += f
                if snap.phase == "after" and label == "attack":
                    per_attack[snap.batch.name[i]][0] += 1
                    per_attack[snap.batch.name[i]][1] += f

    def rate(phase: str, label: str, *, missed: bool = False) -> str:
        flagged, seen = counts[(phase, label, "flagged")], counts[(phase, label, "all")]
        return pct(seen - flagged if missed else flagged, seen)

    print()
    print(f"false-positive rate (ordinary, steady+after) : {pct(flagged_ordinary, ordinary)}   target <= 0.2%")
    print(f"new-software detection (install)            : {rate('install', 'new_software')}   target >= 90%")
    print(f"panic efficacy (new software not flagged)   : {rate('after', 'new_software', missed=True)}   target 100%")
    print(f"attack recall (after)                       : {rate('after', 'attack')}   target >= 95%")
    for name, (n_all, n_flag) in sorted(per_attack.items()):
        print(f"    {name:<14} {pct(n_flag, n_all)}")
    print(f"exclusion kept (excluded attack flagged)    : {rate('after', 'attack_excluded')}   target 100%")
    # Adversarial fleets (tests/adversarial.py) label each story's rows attack:<class> or benign:<class>.
    for kind in sorted({k for (_, k, _) in counts if ":" in k}):
        flagged = sum(counts[(p, kind, "flagged")] for p in ("steady", "install", "after"))
        seen = sum(counts[(p, kind, "all")] for p in ("steady", "install", "after"))
        target = "target 100%" if kind.startswith("attack:") else "target 0%"
        print(f"  {kind:<42} : flagged {pct(flagged, seen)}   {target}")
    print(f"  (install: excluded attack flagged by v1    : {rate('install', 'attack_excluded')}; "
          f"ordinary rows flagged {pct(install_fp, install_ordinary)})")
    print(f"training time v1 / v2                        : {train1:.2f} s / {train2:.2f} s  "
          f"(+ GROUP BY emulation {agg1:.1f} s / {agg2:.1f} s, the database's job)")
    print(f"training peak memory v1 / v2 (tracemalloc)   : {mem1:.0f} MiB / {mem2:.0f} MiB")

    # Latency of one 300-row batch, as at ingestion.
    big = max(after, key=lambda s: len(s.batch))
    b = big.batch
    idx = np.arange(300) % len(b)
    batch300 = ObservationBatch(host=[b.host[i] for i in idx], os=[b.os[i] for i in idx],
                                name=[b.name[i] for i in idx], exe=[b.exe[i] for i in idx],
                                parent=[b.parent[i] for i in idx], user=[b.user[i] for i in idx],
                                hour=b.hour[idx], cpu=b.cpu[idx], mem=b.mem[idx],
                                script=[b.script[i] for i in idx], args=[b.args[i] for i in idx])
    for _ in range(3):
        v2.score(batch300)
    for _ in range(50):
        t0 = time.perf_counter()
        v2.score(batch300)
        latencies.append(time.perf_counter() - t0)
    print(f"scoring latency, 300 rows                    : median {1000 * np.median(latencies):.2f} ms, "
          f"max {1000 * max(latencies):.2f} ms")

    if not args.quiet:
        print()
        print("false positives by (phase, name, reasons):" if fp else "false positives: none")
        for (phase, name, why), n in fp.most_common(40):
            print(f"  {n:6d}  {phase:<7} {name:<30} {why}")
        if fp_rows:
            print("ordinary rows flagged in install (not in the FP figure):")
            for (phase, name, why), n in fp_rows.most_common(20):
                print(f"  {n:6d}  {phase:<7} {name:<30} {why}")
        missed = Counter()
        for snap in after:
            flagged, _, scores = res2[id(snap)]
            for i, label in enumerate(snap.labels):
                if label in ("attack", "attack_excluded") and not flagged[i]:
                    missed[(label, snap.batch.name[i], snap.batch.exe[i], snap.batch.parent[i])] += 1
        if missed:
            print("missed attacks (label, name, exe, parent):")
            for k, n in missed.most_common(20):
                print(f"  {n:6d}  {k}")
        print(f"v1 stats: {json.dumps({k: v for k, v in v1.stats.items() if k != 'parameters'})}")
        print(f"v2 stats: {json.dumps({k: v for k, v in v2.stats.items() if k != 'parameters'})}")


if __name__ == "__main__":
    main()

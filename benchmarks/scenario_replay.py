#!/usr/bin/env python
"""Replay a fleetsim scenario through the real ingestion path and the real panic button, and grade it.

    DATABASE_URL=postgres://127.0.0.1:5432/voltaxe_scenario .venv/bin/python benchmarks/scenario_replay.py DIR \
        [--fresh] [--json PATH] [--check] [--batch 100] [--top 30]

DIR holds snapshots.jsonl.gz, labels.jsonl.gz and manifest.json written by
../shared/scenarios/fleetsim.py (keep its default --end: the scenario must end before now).

What happens, in file order:
1. `baseline` (timestamps before the manifest's steady_start) goes through
   telemetry.ingest.snapshot_ingest_batch in batches of ~100; no model exists, so it is stored unscored.
2. The first model is trained the way an operator would: `manage.py retrain --sync --wait` in a subprocess.
3. `steady` and `install` are ingested; each ingestion response says which rows it flagged.
4. At the manifest's panic_at the panic button is pressed with the manifest's `exclude_on_panic` names:
   `manage.py retrain --sync --wait --exclude NAME...`; wall time from the press to the new model
   being active and the subprocess's peak RSS are measured, and the TrainingRun row is read back.
5. `after` is ingested, recording flags.
Then the six figures of the scenario README are printed against their targets, with ingestion
throughput and a breakdown of false positives by (process name, first reason).

This is evaluation code: the scenario's names (hosts, processes, times) come from the manifest and
the labels only; the product never sees them. Without DATABASE_URL it uses the default SQLite
database of the checkout (and --fresh empties its telemetry, axon and audit tables).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

# The scenario README's targets.
FP_RATE_MAX = 0.002
NEW_SOFTWARE_MIN = 0.90
PANIC_EFFICACY_MIN = 1.0
ATTACK_RECALL_MIN = 0.95
EXCLUSION_KEPT_MIN = 1.0
RETRAIN_SECONDS_MAX = 15.0
RETRAIN_MEMORY_MIB_MAX = 1024.0  # 1 GB, read as 1 GiB

ORDINARY = "ordinary"
PRE_PHASES = ("steady", "install")


# --- Django --------------------------------------------------------------------------------


def django_setup() -> None:
    """Configure and start Django for a run of this command (not used by the tests: pytest-django does it)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voltaxe.settings")
    os.environ.setdefault("DEBUG", "1")  # a local evaluation run; set DEBUG=0 and SECRET_KEY to try production settings
    if not os.environ.get("MODEL_STORE_DIR"):
        os.environ["MODEL_STORE_DIR"] = tempfile.mkdtemp(prefix="voltaxe-scenario-models-")
    import django

    django.setup()


def db_prepare(*, fresh: bool) -> None:
    """Migrate; with `fresh`, empty the telemetry, axon and audit tables first so a rerun starts clean."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    if fresh:
        db_flush()


def db_flush() -> None:
    from django.apps import apps
    from django.core.management.color import no_style
    from django.db import connection

    tables = [
        model._meta.db_table
        for label in ("telemetry", "axon", "audit")
        for model in apps.get_app_config(label).get_models(include_auto_created=True)
    ]
    sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=True)
    connection.ops.execute_sql_flush(sql)
    from axon.scoring import model_cache

    model_cache.reset()


# --- the scenario ----------------------------------------------------------------------------


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read_manifest(directory: Path) -> dict:
    return json.loads((Path(directory) / "manifest.json").read_text())


def iter_scenario(directory: Path) -> Iterator[tuple[dict, dict]]:
    """(payload, label) pairs in file order, streamed."""
    directory = Path(directory)
    with gzip.open(directory / "snapshots.jsonl.gz", "rt", encoding="utf-8") as snaps, \
            gzip.open(directory / "labels.jsonl.gz", "rt", encoding="utf-8") as labels:
        for n, (line, label_line) in enumerate(zip(snaps, labels)):
            label = json.loads(label_line)
            if label.get("line", n) != n:
                raise ValueError(f"labels.jsonl.gz line {n} describes snapshot {label.get('line')}")
            yield json.loads(line), label


# --- the tally -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Per process observation: its label, its phase, whether the ingestion response flagged it."""

    counts: Counter = field(default_factory=Counter)            # (phase, label) -> observations
    flagged: Counter = field(default_factory=Counter)           # (phase, label) -> flagged observations
    fp: Counter = field(default_factory=Counter)                # (name, first reason) -> flagged ordinary, steady+after
    fp_phase: Counter = field(default_factory=Counter)          # (phase, name, first reason)
    install_fp: Counter = field(default_factory=Counter)        # ordinary rows flagged in install (not in the FP figure)
    by_name: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # (phase, label, name) -> [all, flagged]
    missed: Counter = field(default_factory=Counter)            # (label, name, exe) not flagged in after
    fp_hosts: dict = field(default_factory=lambda: defaultdict(set))  # (name, first reason) -> hostnames
    errors: Counter = field(default_factory=Counter)            # phase -> rejected snapshots
    error_samples: list = field(default_factory=list)
    scored_baseline: int = 0                                    # baseline snapshots that came back scored (should be 0)
    unscored_later: int = 0                                     # steady/install/after snapshots that came back unscored
    snapshots: Counter = field(default_factory=Counter)         # phase -> snapshots
    records: Counter = field(default_factory=Counter)           # phase -> process records

    def add(self, payload: dict, label: dict, response: dict) -> None:
        phase = label["phase"]
        procs = payload.get("processes") or []
        self.snapshots[phase] += 1
        self.records[phase] += len(procs)
        if "error" in response:
            self.errors[phase] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(response["error"].get("detail"))
            return
        if phase == "baseline":
            self.scored_baseline += response.get("model_version") is not None
            return
        if response.get("model_version") is None:
            self.unscored_later += 1
        marks = {index: kind for index, kind in label["marks"]}
        anomalies = {a["index"]: a for a in response.get("anomalies", [])}
        host = payload.get("hostname", "")
        for i, proc in enumerate(procs):
            kind = marks.get(i, ORDINARY)
            hit = i in anomalies
            name = proc.get("name", "") if isinstance(proc, dict) else str(proc)
            self.counts[(phase, kind)] += 1
            self.flagged[(phase, kind)] += hit
            if kind == ORDINARY:
                if hit:
                    reasons = anomalies[i].get("reasons") or []
                    key = (name, reasons[0] if reasons else "")
                    if phase == "install":
                        self.install_fp[key] += 1
                    else:
                        self.fp[key] += 1
                        self.fp_phase[(phase, *key)] += 1
                        self.fp_hosts[key].add(host)
                continue
            entry = self.by_name[(phase, kind, name)]
            entry[0] += 1
            entry[1] += hit
            if phase == "after" and kind.startswith("attack") and not hit:
                self.missed[(kind, name, (proc.get("exe") if isinstance(proc, dict) else "") or "")] += 1

    def n(self, phases, kind) -> tuple[int, int]:
        """(flagged, all) over the phases."""
        phases = (phases,) if isinstance(phases, str) else phases
        return (sum(self.flagged[(p, kind)] for p in phases), sum(self.counts[(p, kind)] for p in phases))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def figures(tally: Tally, panic: dict | None = None) -> dict:
    """The six figures of the scenario README, each {value, num, den, target, ok}."""
    out = {}

    def fig(key, title, num, den, target, *, at_most=False, value=None):
        value = _ratio(num, den) if value is None else value
        # A figure with nothing to judge (an adversarial fleet has no plain "attack" rows) is no miss.
        ok = (not den) if value is None else (value <= target if at_most else value >= target)
        out[key] = {"title": title, "value": value, "num": num, "den": den,
                    "target": target, "compare": "<=" if at_most else ">=", "ok": ok}

    f, a = tally.n(("steady", "after"), ORDINARY)
    fig("false_positive_rate", "false-positive rate (ordinary, steady+after)", f, a, FP_RATE_MAX, at_most=True)
    f, a = tally.n("install", "new_software")
    fig("new_software_detection", "new-software detection (install)", f, a, NEW_SOFTWARE_MIN)
    f, a = tally.n("after", "new_software")
    fig("panic_efficacy", "panic efficacy (new software NOT flagged, after)", a - f, a, PANIC_EFFICACY_MIN)
    f, a = tally.n("after", "attack")
    fig("attack_recall", "attack recall (after)", f, a, ATTACK_RECALL_MIN)
    f, a = tally.n("after", "attack_excluded")
    fig("exclusion_kept", "exclusion kept (excluded name flagged, after)", f, a, EXCLUSION_KEPT_MIN)
    # Adversarial fleets (tests/adversarial.py): every row of an attack story flagged, of a benign one none.
    for kind in sorted({k for (_, k) in tally.counts if ":" in k}):
        f, a = tally.n(("steady", "install", "after"), kind)
        if kind.startswith("attack:"):
            fig(kind, f"{kind} flagged", f, a, ATTACK_RECALL_MIN)
        else:
            fig(kind, f"{kind} flagged", f, a, FP_RATE_MAX, at_most=True)
    if panic is not None:
        seconds = panic.get("press_to_active_seconds")
        memory = panic.get("peak_rss_mib")
        ok = (seconds is not None and seconds <= RETRAIN_SECONDS_MAX
              and (memory is None or memory <= RETRAIN_MEMORY_MIB_MAX))
        out["retrain"] = {"title": "panic retrain (press -> active; peak RSS)",
                          "value": seconds, "peak_rss_mib": memory, "target": RETRAIN_SECONDS_MAX,
                          "target_memory_mib": RETRAIN_MEMORY_MIB_MAX, "compare": "<=", "ok": ok}
    return out


# --- the retrains ----------------------------------------------------------------------------


def _run_summary(run_id: int | None, press: datetime, wall: float) -> dict:
    """What the TrainingRun row and its model version say about one press."""
    from axon.models import ModelVersion, TrainingRun

    out = {"run_id": run_id, "wall_seconds": round(wall, 3)}
    run = TrainingRun.objects.filter(pk=run_id).first() if run_id else None
    if run is None:
        return out
    version = ModelVersion.objects.filter(run=run).first()
    out.update(
        status=run.status, message=run.message, log=run.log, exclude=run.exclude,
        run_duration_seconds=run.duration_seconds,
        queued_to_started_seconds=(run.started_at - run.created_at).total_seconds() if run.started_at else None,
    )
    if version is not None:
        out.update(
            model_version=version.version, model_status=version.status, training_seconds=version.training_seconds,
            records=version.records, processes=version.processes, hosts=version.hosts, gate_reason=version.gate_reason,
            recent_flag_rate=version.metrics.get("recent_flag_rate"),
            active_recent_flag_rate=version.metrics.get("active_recent_flag_rate"),
        )
        if version.activated_at is not None:
            out["press_to_active_seconds"] = round((version.activated_at - press).total_seconds(), 3)
    return out


def retrain_subprocess(*, exclude: list[str], reason: str, env: dict | None = None, sample_every: float = 0.05) -> dict:
    """Press the button the operator's way: `manage.py retrain --sync --wait [--exclude NAME]...` in a child process.

    Peak memory: the child's own ru_maxrss (os.wait4, exact for that child) and psutil sampling of
    the child and its descendants.
    """
    from django.utils import timezone

    from axon.scoring import model_cache

    cmd = [sys.executable, str(REPO / "manage.py"), "retrain", "--sync", "--wait", "--reason", reason]
    for name in exclude:
        cmd += ["--exclude", name]
    peak = {"rss": 0}
    press = timezone.now()
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(cmd, cwd=REPO, env=env if env is not None else os.environ.copy(),
                                 stdout=out, stderr=subprocess.STDOUT, text=True)
        done = threading.Event()

        def sample() -> None:
            try:
                import psutil

                proc = psutil.Process(child.pid)
                while not done.is_set():
                    try:
                        rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        break
                    peak["rss"] = max(peak["rss"], rss)
                    done.wait(sample_every)
            except Exception:  # psutil missing or the child already gone: wait4 still measures
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        done.set()
        sampler.join()
        out.seek(0)
        output = out.read()
    match = re.search(r"run (\d+)", output)
    summary = _run_summary(int(match.group(1)) if match else None, press, wall)
    summary.update(
        command=" ".join(cmd[1:]), returncode=child.returncode, output=output[-4000:],
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        sampled_peak_rss_mib=round(peak["rss"] / MIB, 1) if peak["rss"] else None,
    )
    model_cache.reset()  # this process asks for the active version at its next ingestion
    return summary


def retrain_inprocess(*, exclude: list[str], reason: str) -> dict:
    """The same press in this process (the tests): retrain_request without the queue, then retrain_run."""
    from django.utils import timezone

    from audit.actors import Actor
    from axon.models import TrainingRun
    from axon.scoring import model_cache
    from axon.services.press import retrain_request
    from axon.services.runs import retrain_run

    press = timezone.now()
    started = time.monotonic()
    outcome = retrain_request(actor=Actor(), body={"reason": reason, "exclude": exclude}, enqueue=False)
    run = retrain_run(run_id=outcome.run.pk)
    summary = _run_summary(run.pk, press, time.monotonic() - started)
    summary["returncode"] = 0 if run.status == TrainingRun.Status.SUCCEEDED else 1
    model_cache.reset()
    return summary


# --- the replay --------------------------------------------------------------------------------


@dataclass
class Replay:
    manifest: dict
    tally: Tally
    first: dict            # the first training, before steady
    panic: dict            # the panic-button retrain
    ingest: dict           # stage -> {"snapshots", "records", "seconds"}


STAGES = ("baseline", "pre", "after")


def replay(directory: Path, *, retrain: Callable[..., dict], batch_size: int = 100,
           log: Callable[[str], None] = lambda line: None, manifest: dict | None = None) -> Replay:
    """Ingest the scenario in file order; train before `steady`, press the button at `panic_at`."""
    from django.db import reset_queries

    from telemetry.ingest import snapshot_ingest_batch

    manifest = manifest or read_manifest(directory)
    steady_start, panic_at = parse_ts(manifest["steady_start"]), parse_ts(manifest["panic_at"])
    exclude = list(manifest.get("exclude_on_panic") or [])
    tally = Tally()
    ingest = {s: {"snapshots": 0, "records": 0, "seconds": 0.0} for s in STAGES}
    first: dict = {}
    panic: dict = {}
    pending: list[tuple[dict, dict]] = []
    stage = "baseline"
    last_report = time.monotonic()

    def flush() -> None:
        nonlocal last_report
        if not pending:
            return
        started = time.perf_counter()
        results = snapshot_ingest_batch(payloads=[p for p, _ in pending])
        ingest[stage]["seconds"] += time.perf_counter() - started
        reset_queries()  # DEBUG keeps every query otherwise
        for (payload, label), result in zip(pending, results):
            tally.add(payload, label, result)
            ingest[stage]["records"] += len(payload.get("processes") or [])
        ingest[stage]["snapshots"] += len(pending)
        pending.clear()
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            done = sum(s["records"] for s in ingest.values())
            secs = sum(s["seconds"] for s in ingest.values())
            log(f"  ... {stage}: {done:,} records ingested in {secs:.0f} s ({done / max(secs, 1e-9):,.0f} records/s)")

    def advance(to: str) -> None:
        nonlocal stage
        while STAGES.index(stage) < STAGES.index(to):
            flush()
            if stage == "baseline":
                log(f"baseline ingested: {ingest['baseline']['records']:,} records in "
                    f"{ingest['baseline']['seconds']:.1f} s; training the first model")
                first.update(retrain(exclude=[], reason="scenario replay: first model"))
                log(f"  first model: {_retrain_line(first)}")
                stage = "pre"
            else:
                log(f"panic button at {manifest['panic_at']}, excluding {', '.join(exclude) or 'nothing'}")
                panic.update(retrain(exclude=exclude, reason="scenario replay: panic button"))
                log(f"  panic retrain: {_retrain_line(panic)}")
                stage = "after"

    for payload, label in iter_scenario(directory):
        ts = parse_ts(payload["timestamp"])
        target = "baseline" if ts < steady_start else "pre" if ts < panic_at else "after"
        if target != stage:
            advance(target)
        pending.append((payload, label))
        if len(pending) >= batch_size:
            flush()
    flush()
    advance("after")  # a scenario that ends before the button still presses it
    return Replay(manifest, tally, first, panic, ingest)


def _retrain_line(r: dict) -> str:
    bits = [f"run {r.get('run_id')} {r.get('status', '?')}"]
    if r.get("model_version") is not None:
        bits.append(f"v{r['model_version']} {r.get('model_status')}")
    if r.get("press_to_active_seconds") is not None:
        bits.append(f"press->active {r['press_to_active_seconds']:.2f} s")
    bits.append(f"wall {r.get('wall_seconds', 0):.2f} s")
    if r.get("peak_rss_mib") is not None:
        bits.append(f"peak RSS {r['peak_rss_mib']:.0f} MiB")
    if r.get("returncode"):
        bits.append(f"exit {r['returncode']}")
    return ", ".join(bits)


# --- the report ----------------------------------------------------------------------------------


def _fmt(fig: dict) -> str:
    if fig.get("den") is not None:
        value = "n/a (0 rows)" if fig["value"] is None else f"{100 * fig['value']:.2f}% ({fig['num']}/{fig['den']})"
        target = f"{fig['compare']} {100 * fig['target']:g}%"
    else:
        value = "n/a" if fig["value"] is None else f"{fig['value']:.2f} s"
        if fig.get("peak_rss_mib") is not None:
            value += f", {fig['peak_rss_mib']:.0f} MiB"
        target = f"<= {fig['target']:g} s, <= {fig['target_memory_mib']:g} MiB"
    return f"{fig['title']:<52} {value:<28} target {target:<24} {'ok' if fig['ok'] else 'MISS'}"


def report(result: Replay, figs: dict, *, top: int = 30) -> str:
    t, m = result.tally, result.manifest
    lines = []
    total_records = sum(t.records.values())
    lines.append(f"scenario: {sum(t.snapshots.values()):,} snapshots, {total_records:,} process records "
                 f"(manifest: {m.get('snapshots', '?'):,} / {m.get('process_records', '?'):,})")
    for phase in ("baseline", "steady", "install", "after"):
        lines.append(f"  {phase:<9} {t.snapshots[phase]:>7,} snapshots {t.records[phase]:>10,} records")
    lines.append("")
    lines.append("ingestion (snapshot_ingest_batch, wall time inside the call):")
    names = {"baseline": "baseline (unscored)", "pre": "steady+install (scored)", "after": "after (scored)"}
    all_rec = all_sec = 0
    for stage, s in result.ingest.items():
        all_rec += s["records"]
        all_sec += s["seconds"]
        rate = s["records"] / s["seconds"] if s["seconds"] else 0
        lines.append(f"  {names[stage]:<26} {s['records']:>10,} records in {s['seconds']:8.1f} s = {rate:>9,.0f} records/s "
                     f"({s['snapshots'] / s['seconds'] if s['seconds'] else 0:,.0f} snapshots/s)")
    lines.append(f"  {'all':<26} {all_rec:>10,} records in {all_sec:8.1f} s = "
                 f"{all_rec / all_sec if all_sec else 0:>9,.0f} records/s")
    if sum(t.errors.values()):
        lines.append(f"  REJECTED snapshots: {dict(t.errors)}; e.g. {t.error_samples[:3]}")
    if t.scored_baseline:
        lines.append(f"  note: {t.scored_baseline} baseline snapshots came back scored (a model existed before the replay?)")
    if t.unscored_later:
        lines.append(f"  note: {t.unscored_later} snapshots after the first training came back UNSCORED")
    lines.append("")
    for title, r in (("first training", result.first), ("panic button", result.panic)):
        if not r:
            continue
        lines.append(f"{title}: {_retrain_line(r)}")
        if r.get("sampled_peak_rss_mib") is not None:
            lines.append(f"  psutil-sampled peak RSS {r['sampled_peak_rss_mib']:.0f} MiB; "
                         f"TrainingRun duration {r.get('run_duration_seconds')} s; "
                         f"model.training_seconds {r.get('training_seconds')}")
        if r.get("records") is not None:
            lines.append(f"  learned from {r['records']:,} records, {r['processes']} processes, {r['hosts']} hosts; "
                         f"recent flag rate {r.get('recent_flag_rate')} (active {r.get('active_recent_flag_rate')})")
        if r.get("gate_reason"):
            lines.append(f"  HELD: {r['gate_reason']}")
        for line in (r.get("log") or "").splitlines():
            lines.append(f"  | {line}")
        if r.get("returncode") and r.get("output"):
            lines.append("  output:")
            lines.extend(f"  > {line}" for line in r["output"].splitlines()[-15:])
    lines.append("")
    lines.append("figures:")
    for fig in figs.values():
        lines.append("  " + _fmt(fig))
    lines.append("")
    lines.append("by process (phase, label, name: flagged/all):")
    for (phase, kind, name), (n_all, n_flag) in sorted(t.by_name.items()):
        lines.append(f"  {phase:<8} {kind:<16} {name:<20} {n_flag}/{n_all}")
    f_i, a_i = t.n("install", ORDINARY)
    f_s, a_s = t.n("steady", ORDINARY)
    f_a, a_a = t.n("after", ORDINARY)
    lines.append(f"ordinary flagged: steady {f_s}/{a_s}, install {f_i}/{a_i} (not in the FP figure), after {f_a}/{a_a}")
    lines.append("")
    if t.fp:
        lines.append(f"false positives (steady+after) by (process name, first reason), top {top}:")
        for (name, why), n in t.fp.most_common(top):
            hosts = sorted(t.fp_hosts[(name, why)])
            where = ", ".join(hosts[:4]) + (f" +{len(hosts) - 4}" if len(hosts) > 4 else "")
            split = "/".join(str(t.fp_phase[(p, name, why)]) for p in ("steady", "after"))
            lines.append(f"  {n:6d}  (steady/after {split:>9})  {name:<28} {why}  [{where}]")
    else:
        lines.append("false positives (steady+after): none")
    if t.install_fp:
        lines.append(f"ordinary rows flagged in install, top {min(top, 10)}:")
        for (name, why), n in t.install_fp.most_common(min(top, 10)):
            lines.append(f"  {n:6d}  {name:<28} {why}")
    if t.missed:
        lines.append("attacks NOT flagged after the panic button (label, name, exe):")
        for key, n in t.missed.most_common(20):
            lines.append(f"  {n:6d}  {key}")
    return "\n".join(lines)


def as_json(result: Replay, figs: dict) -> dict:
    t = result.tally
    strip = ("output",)
    return {
        "manifest": result.manifest,
        "figures": figs,
        "ok": all(f["ok"] for f in figs.values()),
        "records": sum(t.records.values()),
        "snapshots": sum(t.snapshots.values()),
        "phases": {p: {"snapshots": t.snapshots[p], "records": t.records[p]} for p in t.snapshots},
        "ingestion": {k: {**v, "records_per_second": v["records"] / v["seconds"] if v["seconds"] else None}
                      for k, v in result.ingest.items()},
        "first_training": {k: v for k, v in result.first.items() if k not in strip},
        "panic_retrain": {k: v for k, v in result.panic.items() if k not in strip},
        "false_positives": [{"name": n, "reason": r, "count": c, "hosts": sorted(t.fp_hosts[(n, r)])}
                            for (n, r), c in t.fp.most_common()],
        "install_ordinary_flagged": [{"name": n, "reason": r, "count": c} for (n, r), c in t.install_fp.most_common()],
        "by_name": [{"phase": p, "label": k, "name": n, "all": v[0], "flagged": v[1]}
                    for (p, k, n), v in sorted(t.by_name.items())],
        "missed": [{"label": k, "name": n, "exe": e, "count": c} for (k, n, e), c in t.missed.most_common()],
        "rejected": dict(t.errors),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path, help="a directory written by fleetsim.py")
    ap.add_argument("--fresh", action="store_true", help="empty the telemetry, axon and audit tables first")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 if any figure misses its target")
    ap.add_argument("--batch", type=int, default=100, help="snapshots per ingestion call (default 100)")
    ap.add_argument("--top", type=int, default=30, help="rows of the false-positive breakdown")
    ap.add_argument("--press-default", action="store_true",
                    help="press with no exclude and no approve (nobody unticks anything): the defaults must keep the attack out")
    args = ap.parse_args(argv)
    for name in ("manifest.json", "snapshots.jsonl.gz", "labels.jsonl.gz"):
        if not (args.directory / name).is_file():
            ap.error(f"{args.directory / name} is missing; write the scenario with fleetsim.py --out {args.directory}")

    django_setup()
    from django.conf import settings
    from django.db import connection

    from axon.models import ModelVersion
    from telemetry.models import Snapshot

    def log(line: str) -> None:
        print(line, flush=True)

    db = connection.settings_dict
    log(f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}; model store {settings.MODEL_STORE_DIR}; "
        f"DEBUG={settings.DEBUG}")
    started = time.monotonic()
    db_prepare(fresh=args.fresh)
    if not args.fresh and (Snapshot.objects.exists() or ModelVersion.objects.exists()):
        log("WARNING: the database already holds telemetry or models; the figures will not be this scenario's "
            "alone (use --fresh). Snapshots already stored come back as stored.")
    log(f"migrated{' and flushed' if args.fresh else ''} in {time.monotonic() - started:.1f} s; replaying {args.directory}")

    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    if args.press_default:
        manifest = read_manifest(args.directory)
        manifest["exclude_on_panic"] = []
        log("pressing with no exclude and no approve: what the preview ticks by default is learned")
    result = replay(args.directory, batch_size=args.batch, log=log, manifest=manifest if args.press_default else None,
                    retrain=lambda **kw: retrain_subprocess(env=env, **kw))
    figs = figures(result.tally, result.panic)
    log("")
    log(report(result, figs, top=args.top))
    log(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(as_json(result, figs), indent=2, default=str) + "\n")
        log(f"figures written to {args.json}")
    if args.check and not all(f["ok"] for f in figs.values()):
        missed = [k for k, f in figs.items() if not f["ok"]]
        log(f"CHECK FAILED: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

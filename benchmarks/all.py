#!/usr/bin/env python3
"""Every Voltaxe performance figure in one command, each section skippable.

    .venv/bin/python benchmarks/all.py [--only ingest,retrain,live,request,swap,big] [--json PATH]

Sections (in this order; each records its wall time and the load average before and after):

  ingest   benchmarks/ingest.py (imported, --with-model, PostgreSQL, Redis): records/s through the batch
           endpoint and single-snapshot p99.
  retrain  the reference scenario (fleetsim default, ~1.04 M records) loaded into PostgreSQL through
           telemetry.services.snapshot_ingest_batch (baseline by --loaders parallel processes, one host
           partition each; then in file order, scored, like benchmarks/scenario_replay.py), a first model and
           the panic-button retrain (`manage.py retrain --sync --wait --exclude ...` in a subprocess,
           scenario_replay.retrain_subprocess: wall time, press -> active, peak RSS by wait4 and psutil).
  live     with that database (>= 1 M records): gunicorn + a qcluster; Live Telemetry page (/live-telemetry/)
           p95 after a session login through the /login/ form, and GET /api/telemetry/summary/ p95 with JWT.
  request  POST /api/axon/retrain p99 from 20 concurrent clients (20 security-admin users) while a real worker
           trains (a press starts a run; the others answer "already_running" until it ends, then the next
           press starts the next run); RETRAIN_*_RATE raised.
  swap     POST /api/axon/models/<v>/activate/, then small ingestion POSTs on keep-alive connections pinned to
           every gunicorn worker (psutil maps each connection to its worker): the delay until every worker's
           responses carry the new model_version.
  big      fleetsim --every 10 (~6 M records) into its own database, then the same retrains (timed: generation,
           load, retrain).

Databases (created when missing; their names contain "bench"): --db-ref, --db-big, --db-ingest. Redis
--redis (db 10-14; emptied). Scenario files are cached in --data (regenerated when older than 2 hours).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import ingest  # noqa: E402
import scenario_replay as sr  # noqa: E402
import soak  # noqa: E402
from soak import Http, say  # noqa: E402

ROOT = ingest.ROOT
FLEETSIM = ROOT.parent / "shared" / "scenarios" / "fleetsim.py"
SECTIONS = ("ingest", "retrain", "live", "request", "swap", "big")

TARGETS = {
    "ingest_records_per_s": (">=", 20_000, "records/s"),
    "single_p99_ms": ("<=", 50, "ms"),
    "retrain_1m_seconds": ("<=", 15, "s"),
    "retrain_1m_peak_rss_mib": ("<=", 1024, "MiB"),
    "retrain_6m_seconds": ("<=", 60, "s"),
    "retrain_request_p99_ms": ("<=", 50, "ms"),
    "swap_seconds": ("<=", 2, "s"),
    "retrain_request_p99_ms_think_0.5": ("<=", 50, "ms"),
    "live_page_p95_ms": (None, None, "ms"),
    "summary_api_p95_ms": (None, None, "ms"),
}


def pct(values, p):
    return ingest.percentile(list(values), p)


# --- child: load a scenario and retrain (runs with DATABASE_URL of that database) ----------------------


def child_setup():
    sr.django_setup()


def child_load_part(directory: Path, part: int, parts: int, until: str, batch: int) -> int:
    """Ingest the baseline (timestamps before `until`) of the hosts in partition `part`."""
    child_setup()
    from telemetry.services import snapshot_ingest_batch

    until_ts = sr.parse_ts(until)
    pending, records, errors = [], 0, 0
    started = time.perf_counter()
    with gzip.open(directory / "snapshots.jsonl.gz", "rt", encoding="utf-8") as snaps:
        for line in snaps:
            payload = json.loads(line)
            if sr.parse_ts(payload["timestamp"]) >= until_ts:
                break  # the file is in time order
            if zlib.crc32(payload["hostname"].encode()) % parts != part:
                continue
            pending.append(payload)
            if len(pending) >= batch:
                res = snapshot_ingest_batch(payloads=pending)
                errors += sum(1 for r in res if "error" in r)
                records += sum(len(p["processes"]) for p in pending)
                pending.clear()
        if pending:
            res = snapshot_ingest_batch(payloads=pending)
            errors += sum(1 for r in res if "error" in r)
            records += sum(len(p["processes"]) for p in pending)
    print(json.dumps({"part": part, "records": records, "errors": errors, "seconds": time.perf_counter() - started}), flush=True)
    return 0


def child_scenario(directory: Path, out: Path, loaders: int, batch: int) -> int:
    """Fresh tables; baseline by parallel loaders; first retrain; pre-panic scored; panic retrain; after scored."""
    child_setup()
    from django.db import connection

    from telemetry.services import snapshot_ingest_batch

    log = lambda m: say(f"  [load] {m}")  # noqa: E731
    manifest = sr.read_manifest(directory)
    t = time.monotonic()
    sr.db_prepare(fresh=True)
    connection.close()
    log(f"migrated and emptied in {time.monotonic() - t:.1f} s")
    result = {"manifest": manifest, "loaders": loaders}
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))

    t = time.monotonic()
    procs = [subprocess.Popen([sys.executable, __file__, "--_load-part", str(directory), "--_part", str(i), "--_parts", str(loaders),
                               "--_until", manifest["steady_start"], "--_batch", str(batch)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for i in range(loaders)]
    parts = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=7200)
            if p.returncode:
                raise RuntimeError(f"loader exited {p.returncode}")
            parts.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    base_seconds = time.monotonic() - t
    base_records = sum(p["records"] for p in parts)
    result["baseline_load"] = {"records": base_records, "seconds": base_seconds, "records_per_s": base_records / base_seconds,
                               "errors": sum(p["errors"] for p in parts), "parts": parts}
    log(f"baseline: {base_records:,} records by {loaders} loaders in {base_seconds:.1f} s "
        f"({base_records / base_seconds:,.0f} records/s); load average {soak.loadavg()}")

    log("first model: manage.py retrain --sync --wait")
    result["first"] = sr.retrain_subprocess(exclude=[], reason="all.py: first model", env=env)
    log(sr._retrain_line(result["first"]))

    tally = sr.Tally()
    steady_start, panic_at = sr.parse_ts(manifest["steady_start"]), sr.parse_ts(manifest["panic_at"])
    exclude = list(manifest.get("exclude_on_panic") or [])
    stage_t = {"pre": 0.0, "after": 0.0}
    pending: list = []

    def flush(stage):
        if not pending:
            return
        t0 = time.perf_counter()
        res = snapshot_ingest_batch(payloads=[p for p, _ in pending])
        stage_t[stage] += time.perf_counter() - t0
        for (p, label), r in zip(pending, res):
            tally.add(p, label, r)
        pending.clear()

    stage = "pre"
    pressed = False
    for payload, label in sr.iter_scenario(directory):
        ts = sr.parse_ts(payload["timestamp"])
        if ts < steady_start:
            continue
        if ts >= panic_at and not pressed:
            flush(stage)
            log(f"panic button, excluding {exclude}")
            result["panic"] = sr.retrain_subprocess(exclude=exclude, reason="all.py: panic button", env=env)
            log(sr._retrain_line(result["panic"]))
            pressed, stage = True, "after"
        pending.append((payload, label))
        if len(pending) >= batch:
            flush(stage)
    flush(stage)
    if not pressed:
        result["panic"] = sr.retrain_subprocess(exclude=exclude, reason="all.py: panic button", env=env)
    result["scored_ingest_seconds"] = stage_t
    result["figures"] = sr.figures(tally, result["panic"])
    for fig in result["figures"].values():
        log(sr._fmt(fig))
    from telemetry.models import ProcessRecord

    result["records_stored"] = ProcessRecord.objects.count()
    for k in ("first", "panic"):
        result[k].pop("output", None)
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0


# --- helpers ------------------------------------------------------------------------------------------


def fleetsim(out: Path, *extra: str) -> dict:
    """Generate (or reuse, if fresh) a fleetsim scenario; returns {"seconds", "manifest", "generated"}."""
    m = out / "manifest.json"
    if m.is_file() and (out / "snapshots.jsonl.gz").is_file():
        manifest = json.loads(m.read_text())
        end = sr.parse_ts(manifest["end"])
        if datetime.now(timezone.utc) - end < timedelta(hours=2):
            return {"seconds": 0.0, "manifest": manifest, "generated": False}
    t = time.monotonic()
    subprocess.run([sys.executable, str(FLEETSIM), "--out", str(out), *extra], check=True, timeout=3600,
                   stdout=subprocess.DEVNULL)
    return {"seconds": time.monotonic() - t, "manifest": json.loads(m.read_text()), "generated": True}


def load_and_retrain(args, database: str, directory: Path, model_dir: Path, tag: str) -> dict:
    """Run child_scenario against `database` in a subprocess."""
    env = soak.stack_env(database=database, redis_url="", model_dir=model_dir, tmp=Path(tempfile.gettempdir()))
    env.pop("REDIS_URL", None)
    parsed = urlparse(database)
    ingest.ensure_pg_database(SimpleNamespace(python=args.python), parsed, parsed.path.lstrip("/"))
    out = Path(tempfile.mkstemp(prefix=f"voltaxe-all-{tag}-", suffix=".json")[1])
    subprocess.run([args.python, __file__, "--_scenario", str(directory), "--_out", str(out), "--loaders", str(args.loaders)],
                   cwd=ROOT, env=env, check=True, timeout=4 * 3600)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def db_records(database: str) -> int:
    db = soak.DB(database)
    try:
        return db.q("SELECT count(*) FROM telemetry_processrecord")[0][0]
    except Exception:
        return 0
    finally:
        db.close()


class Stack:
    """gunicorn (-w N --threads T) + qcluster(s) with Redis, on an already loaded database."""

    def __init__(self, args, database: str, model_dir: Path, *, workers: int, clusters: int = 1):
        self.tmp = Path(tempfile.mkdtemp(prefix="voltaxe-all-stack-"))
        self.env = soak.stack_env(database=database, redis_url=args.redis, model_dir=model_dir, tmp=self.tmp, extra={
            "RETRAIN_USER_RATE": "100000/h", "RETRAIN_GLOBAL_RATE": "100000/h", "TOKEN_RATE": "100000/m"})
        self.args, self.workers, self.n_clusters = args, workers, clusters
        self.web = None
        self.clusters: list = []

    def __enter__(self):
        a = self.args
        soak.redis_flush(a.redis)
        ingest.manage(SimpleNamespace(python=a.python), self.env, "migrate", "--no-input", timeout=600, capture=True)
        self.web = soak.Web(a.python, self.env, self.tmp, workers=self.workers, threads=a.threads)
        self.web.start()
        for i in range(self.n_clusters):
            q = soak.QCluster(a.python, self.env, self.tmp, i + 1)
            q.start()
            self.clusters.append(q)
        if self.n_clusters and not soak.wait_worker_alive(self.web.port, 90):
            raise RuntimeError("qcluster did not report alive:\n" + self.clusters[0].tail())
        return self

    def __exit__(self, exc_type, *exc):
        soak.stop_all(self.web, self.clusters)
        if exc_type is None:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            say(f"kept {self.tmp} (gunicorn and qcluster logs)")
        return False

    @property
    def port(self):
        return self.web.port


def users(n_admins: int) -> tuple[list[dict], dict]:
    pw = "bench-" + os.urandom(6).hex()
    admins = [{"username": f"bench-admin-{i:02d}", "email": f"bench-admin-{i:02d}@voltaxe.bench", "password": pw,
               "group": "Security Admin"} for i in range(n_admins)]
    analyst = {"username": "bench-analyst", "email": "", "password": pw, "group": "Analyst"}
    return admins, analyst


def wait_runs_idle(port: int, token: str, seconds: float) -> None:
    c = Http(port, 30, {"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            status, _, body, _ = c.request("GET", "/api/axon/status/")
            if status == 200 and json.loads(body).get("current_run") is None:
                return
            time.sleep(1)
    finally:
        c.close()


# --- sections -----------------------------------------------------------------------------------------


def section_ingest(args, res: dict) -> None:
    out = Path(tempfile.mkstemp(prefix="voltaxe-all-ingest-", suffix=".json")[1])
    argv = ["--database", args.db_ingest, "--redis", args.redis, "--with-model", "--json", str(out), *args.ingest_arg]
    say(f"benchmarks/ingest.py {' '.join(argv)}")
    soak.redis_flush(args.redis)
    rc = ingest.main(argv)
    if rc:
        raise RuntimeError(f"ingest.py exited {rc}")
    r = json.loads(out.read_text())
    out.unlink()
    res["ingest"] = r
    res["figures"]["ingest_records_per_s"] = r.get("throughput", {}).get("records_per_s")
    res["figures"]["single_p99_ms"] = r.get("latency", {}).get("p99_ms")


def section_retrain(args, res: dict, *, big: bool) -> None:
    tag = "big" if big else "ref"
    directory = args.data / tag
    t = time.monotonic()
    gen = fleetsim(directory, *(["--every", "10"] if big else []))
    say(f"fleetsim {tag}: {gen['manifest']['process_records']:,} records, {gen['manifest']['snapshots']:,} snapshots "
        f"({'generated in %.1f s' % gen['seconds'] if gen['generated'] else 'reused'})")
    database = args.db_big if big else args.db_ref
    r = load_and_retrain(args, database, directory, args.data / f"models-{tag}", tag)
    r["generation_seconds"] = gen["seconds"]
    r["section_seconds"] = time.monotonic() - t
    res["big" if big else "retrain"] = r
    key = "retrain_6m" if big else "retrain_1m"
    panic = r["panic"]
    res["figures"][f"{key}_seconds"] = panic.get("press_to_active_seconds") or panic.get("wall_seconds")
    res["figures"][f"{key}_peak_rss_mib"] = panic.get("peak_rss_mib")
    res["figures"][f"{key}_first_seconds"] = r["first"].get("wall_seconds")
    res["figures"][f"{key}_first_peak_rss_mib"] = r["first"].get("peak_rss_mib")
    if big:
        res["figures"]["retrain_6m_records"] = r.get("records_stored")


def ensure_ref_loaded(args, res: dict) -> None:
    n = db_records(args.db_ref)
    if n >= args.min_records:
        say(f"{args.db_ref}: {n:,} records stored")
        return
    say(f"{args.db_ref}: only {n:,} records; loading the reference scenario first")
    section_retrain(args, res, big=False)


def section_live(args, res: dict, stack: Stack, analyst: dict, admin_token: str) -> None:
    n = db_records(args.db_ref)
    cookies = soak.session_login(stack.port, analyst["username"], analyst["password"])
    page = Http(stack.port, 60, {"Cookie": soak._cookie_header(cookies)})
    api = Http(stack.port, 60, {"Authorization": f"Bearer {admin_token}"})
    out = {"records": n}
    try:
        for name, client, path in (("live_page", page, "/live-telemetry/"), ("summary_api", api, "/api/telemetry/summary/")):
            times, deadline = [], time.monotonic() + args.live_seconds
            for i in range(args.live_requests + 3):
                if time.monotonic() > deadline:
                    break
                status, _, body, secs = client.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
                if i >= 3:
                    times.append(secs * 1000)
            out[name] = {"n": len(times), "p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "p99_ms": pct(times, 99),
                         "max_ms": max(times)}
            say(f"{path}: {len(times)} GETs, p50 {out[name]['p50_ms']:.0f} ms, p95 {out[name]['p95_ms']:.0f} ms, "
                f"max {out[name]['max_ms']:.0f} ms ({n:,} records stored)")
    finally:
        page.close()
        api.close()
    res["live"] = out
    res["figures"]["live_page_p95_ms"] = out["live_page"]["p95_ms"]
    res["figures"]["summary_api_p95_ms"] = out["summary_api"]["p95_ms"]


def section_request(args, res: dict, stack: Stack, tokens: list[str]) -> None:
    res["request"] = {}
    for i, think in enumerate(float(x) for x in args.request_think.split(",") if x.strip()):
        out = request_round(args, stack, tokens, think)
        res["request"][f"think_{think:g}"] = out
        if i == 0:
            res["figures"]["retrain_request_p99_ms"] = out["p99_ms"]
        else:
            res["figures"][f"retrain_request_p99_ms_think_{think:g}"] = out["p99_ms"]


def request_round(args, stack: Stack, tokens: list[str], think: float) -> dict:
    """20 clients press POST /api/axon/retrain in a loop (with `think` s between a client's presses, +-50 %)."""
    import random

    wait_runs_idle(stack.port, tokens[0], 300)
    first = Http(stack.port, 60, {"Authorization": f"Bearer {tokens[0]}", "Content-Type": "application/json"})
    status, _, body, _ = first.request("POST", "/api/axon/retrain", b'{"reason": "all.py: request section"}')
    first.close()
    if status != 200:
        raise RuntimeError(f"first press answered {status}: {body[:300]!r}")
    run_id = json.loads(body)["run_id"]
    # wait until the worker is really training
    c = Http(stack.port, 30, {"Authorization": f"Bearer {tokens[0]}"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s, _, b, _ = c.request("GET", f"/api/axon/runs/{run_id}/")
        if s == 200 and json.loads(b)["status"] == "running":
            break
        time.sleep(0.2)
    c.close()
    lock = threading.Lock()
    samples: list[tuple[float, float, int, str]] = []   # (t, ms, http, status)
    t0 = time.monotonic()
    end = t0 + args.request_seconds
    stop = threading.Event()

    def client(token: str) -> None:
        h = Http(stack.port, 60, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        n = 0
        try:
            while time.monotonic() < end and not stop.is_set() and n < args.request_max:
                n += 1
                status, _, body, secs = h.request("POST", "/api/axon/retrain", b'{"reason": "all.py: concurrent press"}')
                st = json.loads(body).get("status", "") if status == 200 else ""
                with lock:
                    samples.append((time.monotonic() - t0, secs * 1000, status, st))
                if think and stop.wait(think * random.uniform(0.5, 1.5)):
                    break
        except Exception as exc:  # noqa: BLE001
            with lock:
                samples.append((time.monotonic() - t0, float("nan"), 0, f"{type(exc).__name__}"))
        finally:
            h.close()

    threads = [threading.Thread(target=client, args=(tok,), daemon=True) for tok in tokens[: args.request_clients]]
    la0 = os.getloadavg()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.request_seconds + 120)
    stop.set()
    ok = [s for s in samples if s[2] == 200]
    running = [s[1] for s in ok if s[3] == "already_running"]
    codes = {}
    for s in samples:
        codes[s[2]] = codes.get(s[2], 0) + 1
    out = {"clients": len(threads), "requests": len(samples), "codes": codes,
           "started": sum(1 for s in ok if s[3] == "training_started"), "already_running": len(running),
           "p50_ms": pct([s[1] for s in ok], 50), "p95_ms": pct([s[1] for s in ok], 95), "p99_ms": pct([s[1] for s in ok], 99),
           "max_ms": max((s[1] for s in ok), default=None),
           "p99_ms_while_running": pct(running, 99), "p50_ms_while_running": pct(running, 50),
           "throughput_per_s": len(samples) / args.request_seconds, "loadavg": la0}
    out["think_s"] = think
    say(f"retrain requests (think {think:g} s): {len(samples)} from {len(threads)} clients in {args.request_seconds:g} s, codes {codes}, "
        f"{out['started']} started runs, {len(running)} already_running; p50 {out['p50_ms']:.1f} ms, "
        f"p99 {out['p99_ms']:.1f} ms (while running: p99 {out['p99_ms_while_running']:.1f} ms)")
    wait_runs_idle(stack.port, tokens[0], 300)
    return out


def section_swap(args, res: dict, stack: Stack, admin_token: str, agent: str) -> None:
    import psutil

    auth = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    c = Http(stack.port, 60, auth)
    status, _, body, _ = c.request("GET", "/api/axon/models/")
    versions = json.loads(body)["results"]
    active = next((v["version"] for v in versions if v.get("is_active") or v.get("status") == "active"), None)
    others = [v["version"] for v in versions if v["version"] != active]
    if active is None or not others:
        raise RuntimeError(f"need an active model and another version; have {[(v['version'], v.get('status')) for v in versions]}")
    targets = [others[0], active] * ((args.swaps + 1) // 2)
    targets = targets[: args.swaps]
    # keep-alive connections pinned to every gunicorn worker
    workers = {p.pid for p in stack.web.workers()}
    pinned: dict[int, list[Http]] = {}
    spare: list[Http] = []
    agent_h = {"Authorization": f"Api-Key {agent}", "Content-Type": "application/json"}
    for _ in range(60):
        h = Http(stack.port, 30, agent_h)
        h.request("GET", "/healthz")
        lport = h.local_port
        owner = None
        for pid in workers:
            try:
                if any(k.raddr and k.raddr.port == lport for k in psutil.Process(pid).net_connections("tcp")):
                    owner = pid
                    break
            except psutil.Error:
                pass
        if owner is None:
            spare.append(h)
        else:
            pinned.setdefault(owner, []).append(h)
        if len(pinned) == len(workers) and all(len(v) >= 2 for v in pinned.values()):
            break
    if len(pinned) < len(workers):
        raise RuntimeError(f"could not reach every worker: {len(pinned)}/{len(workers)}")
    poller = KnownHostSnapshots(args.data / "ref")
    conns = [(pid, h) for pid, hs in pinned.items() for h in hs]
    out = {"workers": len(workers), "connections": len(conns), "swaps": []}
    try:
        for target in targets:
            # every worker serving the current model first
            for pid, h in conns:
                h.request("POST", ingest.SINGLE_PATH, poller.next())
            posted: dict = {}

            def activate(target=target, posted=posted) -> None:
                a = Http(stack.port, 120, auth)
                try:
                    posted["status"], _, posted["body"], secs = a.request("POST", f"/api/axon/models/{target}/activate/")
                    posted["ms"], posted["returned_at"] = secs * 1000, time.perf_counter() - t0
                finally:
                    a.close()

            # the activation runs in its own thread: the polls go on while the POST is in progress
            t0 = time.perf_counter()
            activator = threading.Thread(target=activate, daemon=True)
            activator.start()
            switched: dict[int, float | None] = {pid: None for pid in workers}   # since when only the new version
            polls = 0
            deadline = time.perf_counter() + args.swap_timeout
            while time.perf_counter() < deadline and polls < 20_000:
                for pid, h in conns:
                    polls += 1
                    s, _, b, _ = h.request("POST", ingest.SINGLE_PATH, poller.next())
                    now = time.perf_counter() - t0
                    if s != 201:
                        raise RuntimeError(f"ingest answered {s}: {b[:200]!r}")
                    if json.loads(b)["model_version"] == target:
                        if switched[pid] is None:
                            switched[pid] = now
                    else:
                        switched[pid] = None
                if all(v is not None for v in switched.values()) and not activator.is_alive() and \
                        time.perf_counter() - t0 > max(switched.values()) + 0.5:
                    break
            activator.join(timeout=120)
            if posted.get("status") != 200:
                raise RuntimeError(f"activate v{target} answered {posted.get('status')}: {posted.get('body', b'')[:300]!r}")
            post_ms = posted["ms"]
            per_worker = dict(switched)
            done = all(v is not None for v in per_worker.values())
            delay = max(per_worker.values()) if done else None
            swap = {"to": target, "activate_post_ms": post_ms, "delay_s": delay, "per_worker_s": per_worker, "polls": polls,
                    "post_returned_s": posted["returned_at"]}
            out["swaps"].append(swap)
            say(f"swap to v{target}: activate POST took {post_ms:.0f} ms; every worker on v{target} after "
                f"{'NOT WITHIN %gs' % args.swap_timeout if delay is None else '%.2f s' % delay} "
                f"(per worker: {', '.join('%s' % ('-' if v is None else '%.2f' % v) for v in per_worker.values())}; {polls} polls)")
    finally:
        for _, h in conns:
            h.close()
        for h in spare:
            h.close()
        c.close()
    delays = [s["delay_s"] for s in out["swaps"]]
    res["swap"] = out
    res["figures"]["swap_seconds"] = None if any(d is None for d in delays) else max(delays)


class KnownHostSnapshots:
    """Single-snapshot bodies of hosts the reference model knows (the scenario's last hours), with fresh timestamps.

    Ordinary processes of known hosts: polling does not pile up open flags (which every activation re-scores).
    """

    def __init__(self, directory: Path, keep: int = 300):
        import collections

        tail = collections.deque(maxlen=keep)
        with gzip.open(directory / "snapshots.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                tail.append(line)
        self.payloads = [json.loads(line) for line in tail]
        self.i = 0
        self.base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=2)
        self.offset = 0

    def next(self) -> bytes:
        p = dict(self.payloads[self.i % len(self.payloads)])
        self.i += 1
        self.offset += 1  # a second earlier each time: unique (hostname, timestamp), never in the future
        p["timestamp"] = (self.base - timedelta(seconds=self.offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ingest.encode(p)


def section_stack(args, res: dict, which: set) -> None:
    """live, request and swap share one stack on the reference database."""
    ensure_ref_loaded(args, res)
    admins, analyst = users(max(20, args.request_clients))
    soak.users_create(args.python, soak.stack_env(database=args.db_ref, redis_url="", model_dir=args.data / "models-ref",
                                                  tmp=Path(tempfile.gettempdir())), admins + [analyst])
    with Stack(args, args.db_ref, args.data / "models-ref", workers=args.workers, clusters=1) as stack:
        say(f"stack: gunicorn -w {args.workers} --threads {args.threads} on 127.0.0.1:{stack.port} + 1 qcluster "
            f"(Redis {args.redis}); load average {soak.loadavg()}")
        tokens = [soak.jwt_obtain(stack.port, a["username"], a["password"]) for a in admins]
        for name in ("live", "request", "swap"):
            if name not in which:
                continue
            t, la = time.monotonic(), os.getloadavg()
            try:
                if name == "live":
                    section_live(args, res, stack, analyst, tokens[0])
                elif name == "request":
                    section_request(args, res, stack, tokens)
                else:
                    agent = soak.agent_key(args.python, stack.env, "bench-swap-agent")
                    section_swap(args, res, stack, tokens[0], agent)
            except Exception as exc:  # noqa: BLE001
                res["errors"][name] = f"{type(exc).__name__}: {exc}"
                say(f"section {name} FAILED: {exc}")
                print(stack.web.server.tail(15), file=sys.stderr)
            res["timing"][name] = {"seconds": time.monotonic() - t, "loadavg_before": la, "loadavg_after": os.getloadavg()}


# --- the table -------------------------------------------------------------------------------------------


def table(res: dict) -> str:
    f = res["figures"]
    rows = [
        ("ingest throughput (batch, with model)", "ingest_records_per_s", lambda v: f"{v:,.0f} records/s"),
        ("single-snapshot POST p99", "single_p99_ms", lambda v: f"{v:.1f} ms"),
        ("retrain @1.04M: press -> active", "retrain_1m_seconds", lambda v: f"{v:.2f} s"),
        ("retrain @1.04M: peak RSS", "retrain_1m_peak_rss_mib", lambda v: f"{v:.0f} MiB"),
        ("retrain @1.04M: first model wall", "retrain_1m_first_seconds", lambda v: f"{v:.2f} s"),
        ("retrain @6M: press -> active", "retrain_6m_seconds", lambda v: f"{v:.2f} s"),
        ("retrain @6M: peak RSS", "retrain_6m_peak_rss_mib", lambda v: f"{v:.0f} MiB"),
        ("retrain @6M: first model wall", "retrain_6m_first_seconds", lambda v: f"{v:.2f} s"),
        ("retrain request p99 (20 clients)", "retrain_request_p99_ms", lambda v: f"{v:.1f} ms"),
        ("retrain request p99, 20 clients, think 0.5 s", "retrain_request_p99_ms_think_0.5", lambda v: f"{v:.1f} ms"),
        ("Live page p95 (>=1M records)", "live_page_p95_ms", lambda v: f"{v:.0f} ms"),
        ("summary API p95 (>=1M records)", "summary_api_p95_ms", lambda v: f"{v:.0f} ms"),
        ("model swap, all workers", "swap_seconds", lambda v: f"{v:.2f} s"),
    ]
    lines = [f"{'figure':<44} {'value':>18}   {'target':<22} verdict"]
    for title, key, fmt in rows:
        v = f.get(key)
        op, target, unit = TARGETS.get(key, (None, None, ""))
        tgt = f"{op} {target:,} {unit}" if op else "-"
        if v is None:
            verdict, shown = "not run" if key.split("_")[0] not in res.get("errors", {}) else "ERROR", "-"
        else:
            shown = fmt(v)
            verdict = "-" if op is None else ("ok" if (v >= target if op == ">=" else v <= target) else "MISS")
        lines.append(f"{title:<44} {shown:>18}   {tgt:<22} {verdict}")
    lines.append("")
    lines.append("section timings (wall) and load average (1/5/15 min) before -> after:")
    for name, t in res["timing"].items():
        b, a = t["loadavg_before"], t["loadavg_after"]
        lines.append(f"  {name:<8} {t['seconds']:8.1f} s   load {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} -> {a[0]:.2f} {a[1]:.2f} {a[2]:.2f}")
    for k in ("retrain", "big"):
        r = res.get(k)
        if r:
            bl = r["baseline_load"]
            lines.append(f"  {k}: generation {r['generation_seconds']:.1f} s, baseline load {bl['records']:,} records in "
                         f"{bl['seconds']:.1f} s ({bl['records_per_s']:,.0f} records/s, {r['loaders']} loaders), "
                         f"{r['records_stored']:,} records stored; first model {sr._retrain_line(r['first'])}; "
                         f"panic {sr._retrain_line(r['panic'])}")
    for name, err in res.get("errors", {}).items():
        lines.append(f"  ERROR in {name}: {err}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--skip", default="", help="comma-separated sections to leave out")
    p.add_argument("--json", default="", metavar="PATH")
    p.add_argument("--db-ref", default="postgres://127.0.0.1:5432/voltaxe_bench_ref")
    p.add_argument("--db-big", default="postgres://127.0.0.1:5432/voltaxe_bench_big")
    p.add_argument("--db-ingest", default="postgres://127.0.0.1:5432/voltaxe_bench")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "voltaxe-allbench",
                   help="scenario files and model files are kept here")
    p.add_argument("--loaders", type=int, default=2, help="parallel baseline loaders (one host partition each)")
    p.add_argument("--workers", type=int, default=3, help="gunicorn workers for live/request/swap")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ingest-arg", action="append", default=[], help="extra argument for benchmarks/ingest.py (repeatable)")
    p.add_argument("--min-records", type=int, default=1_000_000, help="live/request/swap load the reference scenario below this")
    p.add_argument("--live-requests", type=int, default=50)
    p.add_argument("--live-seconds", type=float, default=120)
    p.add_argument("--request-clients", type=int, default=20)
    p.add_argument("--request-seconds", type=float, default=30)
    p.add_argument("--request-think", default="0,0.5",
                   help="comma-separated think times (s) between one client's presses; the first is the table's figure "
                        "(0: closed loop, every client presses again as soon as answered)")
    p.add_argument("--request-max", type=int, default=2000, help="presses per client at most")
    p.add_argument("--swaps", type=int, default=4)
    p.add_argument("--swap-timeout", type=float, default=15)
    p.add_argument("--python", default=str(ingest.DEFAULT_PY if ingest.DEFAULT_PY.exists() else sys.executable), help=argparse.SUPPRESS)
    # internal (child processes)
    p.add_argument("--_scenario", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_load-part", dest="_load_part", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_part", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--_parts", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--_until", default="", help=argparse.SUPPRESS)
    p.add_argument("--_batch", type=int, default=100, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    which = {s.strip() for s in args.only.split(",") if s.strip()} - {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = which - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    args.which = which
    for url in (args.db_ref, args.db_big, args.db_ingest):
        if "bench" not in urlparse(url).path:
            p.error(f"{url}: the database name must contain 'bench' (its tables are emptied)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._load_part:
        return child_load_part(args._load_part, args._part, args._parts, args._until, args._batch)
    if args._scenario:
        return child_scenario(args._scenario, args._out, args.loaders, args._batch)
    soak.check_redis_url(args.redis)
    args.data.mkdir(parents=True, exist_ok=True)
    res: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                 "loadavg_start": os.getloadavg(), "sections": sorted(args.which, key=SECTIONS.index),
                 "figures": {}, "timing": {}, "errors": {}}
    say(f"sections: {', '.join(res['sections'])}; load average {soak.loadavg()}")
    started = time.monotonic()

    def run(name, fn):
        t, la = time.monotonic(), os.getloadavg()
        say(f"=== {name} ===")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            res["errors"][name] = f"{type(exc).__name__}: {exc}"
            say(f"section {name} FAILED: {type(exc).__name__}: {exc}")
        res["timing"][name] = {"seconds": time.monotonic() - t, "loadavg_before": la, "loadavg_after": os.getloadavg()}
        say(f"=== {name}: {res['timing'][name]['seconds']:.0f} s; load average {soak.loadavg()} ===")

    if "ingest" in args.which:
        run("ingest", lambda: section_ingest(args, res))
    if "retrain" in args.which:
        run("retrain", lambda: section_retrain(args, res, big=False))
    stack_sections = args.which & {"live", "request", "swap"}
    if stack_sections:
        t, la = time.monotonic(), os.getloadavg()
        say(f"=== {', '.join(s for s in ('live', 'request', 'swap') if s in stack_sections)} ===")
        try:
            section_stack(args, res, stack_sections)
        except Exception as exc:  # noqa: BLE001
            for s in stack_sections:
                res["errors"].setdefault(s, f"{type(exc).__name__}: {exc}")
            say(f"stack sections FAILED: {type(exc).__name__}: {exc}")
        res["timing"]["stack"] = {"seconds": time.monotonic() - t, "loadavg_before": la, "loadavg_after": os.getloadavg()}
    if "big" in args.which:
        run("big", lambda: section_retrain(args, res, big=True))
    res["total_seconds"] = time.monotonic() - started
    res["loadavg_end"] = os.getloadavg()
    print("\n" + "=" * 100)
    print(table(res))
    print(f"total {res['total_seconds']:.0f} s; load average {soak.loadavg()} ({os.cpu_count()} CPUs; other work on the machine "
          f"skews every figure)")
    print("=" * 100)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        say(f"saved {args.json}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Every Voltaxe performance figure in one command, each section skippable.

    .venv/bin/python benchmarks/all.py [--only ingest,retrain,live,request,swap,big] [--json PATH]

  ingest   benchmarks/ingest.py --with-model on PostgreSQL and Redis: records/s through the batch endpoint,
           single-snapshot p99.
  retrain  the reference scenario (fleetsim's default, ~1 M records) replayed by benchmarks/scenario_replay.py
           --fresh into PostgreSQL: the first model, then the panic button (`manage.py retrain --sync --wait
           --exclude ...`): press -> active and the peak RSS of the retrain.
  live     on that database: gunicorn + a qcluster; the Live Telemetry page's p95 after a login through the form,
           and GET /api/telemetry/summary/ p95 with a JWT.
  request  POST /api/axon/retrain p99 from --request-clients security admins pressing while a real worker trains
           (one press starts a run, the others answer "already_running"); the retrain rates are raised.
  swap     POST /api/axon/models/<v>/activate/, then small ingestion POSTs on keep-alive connections pinned to
           every gunicorn worker: the delay until every worker answers with the new model_version.
  big      fleetsim --every 10 (~6 M records) into its own database, then the same retrains.
  pickup   press -> the worker starts the run (TrainingRun.started_at - created_at), --presses times on each broker:
           Redis (REDIS_URL) and the ORM broker of the embedded default (no REDIS_URL), demo data in --db-pickup.

Databases (created when missing; names containing "bench"): --db-ref, --db-big, --db-ingest; Redis --redis (db
10-14, emptied). Scenario files are kept in --data and made again when older than two hours.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ingest  # noqa: E402
from tests.harness import (  # noqa: E402
    PYTHON,
    REPO,
    SINGLE_PATH,
    Gunicorn,
    Http,
    QCluster,
    agent_create,
    check_local,
    db_fresh,
    encode,
    jwt_headers,
    manage,
    percentile,
    pg_create,
    redis_flush,
    say,
    server_env,
    session_headers,
    stop_all,
    users_create,
    wait_for,
)

FLEETSIM = REPO.parent / "shared" / "scenarios" / "fleetsim.py"
SECTIONS = ("ingest", "retrain", "live", "request", "swap", "big", "pickup")
# figure: (title, target as (">=" | "<=", number) or None, unit format)
FIGURES = {
    "ingest_records_per_s": ("ingest throughput (batch, with model)", (">=", 20_000), "{:,.0f} records/s"),
    "single_p99_ms": ("single-snapshot POST p99", ("<=", 50), "{:.1f} ms"),
    "retrain_1m_seconds": ("retrain (reference): press -> active", ("<=", 15), "{:.2f} s"),
    "retrain_1m_peak_rss_mib": ("retrain (reference): peak RSS", ("<=", 1024), "{:.0f} MiB"),
    "retrain_1m_first_seconds": ("retrain (reference): first model wall", None, "{:.2f} s"),
    "retrain_6m_seconds": ("retrain (big): press -> active", ("<=", 60), "{:.2f} s"),
    "retrain_6m_peak_rss_mib": ("retrain (big): peak RSS", None, "{:.0f} MiB"),
    "retrain_6m_first_seconds": ("retrain (big): first model wall", None, "{:.2f} s"),
    "retrain_request_p99_ms": ("retrain request p99 (closed loop)", ("<=", 50), "{:.1f} ms"),
    "retrain_request_p99_ms_think_0.5": ("retrain request p99, think 0.5 s", ("<=", 50), "{:.1f} ms"),
    "live_page_p95_ms": ("Live page p95", None, "{:.0f} ms"),
    "summary_api_p95_ms": ("summary API p95", None, "{:.0f} ms"),
    "swap_seconds": ("model swap, all workers", ("<=", 2), "{:.2f} s"),
    "pickup_redis_max_s": ("press -> run started, Redis (max)", ("<=", 0.5), "{:.3f} s"),
    "pickup_orm_max_s": ("press -> run started, ORM broker (max)", None, "{:.3f} s"),
}


def stored_records(database: str) -> int:
    import psycopg2

    try:
        conn = psycopg2.connect(database, connect_timeout=5)
    except psycopg2.OperationalError:
        return 0
    try:
        with conn.cursor() as c:
            c.execute("SELECT count(*) FROM telemetry_processrecord")
            return c.fetchone()[0]
    except psycopg2.Error:
        return 0
    finally:
        conn.close()


# --- ingest, retrain, big --------------------------------------------------------------------------------


def section_ingest(args, res: dict) -> None:
    r = res["ingest"] = ingest.run(ingest.parse_args(
        ["--database", args.db_ingest, "--redis", args.redis, "--with-model", *args.ingest_arg]))
    res["figures"]["ingest_records_per_s"] = r.get("throughput", {}).get("records_per_s")
    res["figures"]["single_p99_ms"] = r.get("latency", {}).get("p99_ms")


def scenario(out: Path, *extra: str) -> Path:
    """A fleetsim scenario in `out`, made again when missing, made with other arguments, or older than two hours."""
    manifest, made_with = out / "manifest.json", out / "fleetsim-args.json"
    if manifest.is_file() and made_with.is_file() and json.loads(made_with.read_text()) == list(extra):
        end = datetime.fromisoformat(json.loads(manifest.read_text())["end"].replace("Z", "+00:00"))
        if datetime.now(UTC) - end < timedelta(hours=2):
            return out
    say(f"fleetsim {' '.join(extra)} -> {out}")
    subprocess.run([PYTHON, str(FLEETSIM), "--out", str(out), *extra], check=True, timeout=3600, stdout=subprocess.DEVNULL)
    made_with.write_text(json.dumps(list(extra)))
    return out


def section_retrain(args, res: dict, *, big: bool) -> None:
    tag, key = ("big", "retrain_6m") if big else ("ref", "retrain_1m")
    directory = scenario(args.data / tag, *(["--every", "10"] if big else []), *args.fleetsim_arg)
    database = args.db_big if big else args.db_ref
    pg_create(database)
    env = server_env(database=database, model_dir=args.data / f"models-{tag}", tmp=args.data)
    out = args.data / f"replay-{tag}.json"
    subprocess.run([PYTHON, str(REPO / "benchmarks" / "scenario_replay.py"), str(directory), "--fresh", "--json", str(out),
                    "--top", "10"], cwd=REPO, env=env, check=True, timeout=4 * 3600)
    r = res[tag] = json.loads(out.read_text())
    panic, first = r["panic_retrain"], r["first_training"]
    res["figures"][f"{key}_seconds"] = panic.get("press_to_active_seconds")
    res["figures"][f"{key}_peak_rss_mib"] = panic.get("peak_rss_mib")
    res["figures"][f"{key}_first_seconds"] = first.get("wall_seconds")


# --- live, request, swap: one stack on the reference database -------------------------------------------------


def section_stack(args, res: dict, which: set[str]) -> None:
    if stored_records(args.db_ref) < args.min_records:
        say(f"{args.db_ref} holds fewer than {args.min_records:,} records: loading the reference scenario first")
        section_retrain(args, res, big=False)
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-all-stack-"))
    env = server_env(database=args.db_ref, redis=args.redis, model_dir=args.data / "models-ref", tmp=tmp,
                     extra={"RETRAIN_USER_RATE": "100000/h", "RETRAIN_GLOBAL_RATE": "100000/h", "TOKEN_RATE": "100000/m"})
    password = "bench-" + os.urandom(6).hex()
    admins = [{"username": f"bench-admin-{i:02d}", "password": password, "group": "Security Admin"}
              for i in range(args.request_clients)]
    analyst = {"username": "bench-analyst", "password": password, "group": "Analyst"}
    redis_flush(args.redis)
    manage(env, "migrate", "--no-input")
    users_create(env, [*admins, analyst])
    web = Gunicorn(env, tmp / "gunicorn.log", workers=args.workers, threads=args.threads)
    cluster = QCluster(env, tmp / "qcluster.log")
    try:
        web.start()
        cluster.start()
        wait_for(lambda: web.request("GET", "/healthz")[1].get("worker") == "ok", 90, "the worker's heartbeat", every=1)
        say(f"stack: gunicorn -w {args.workers} --threads {args.threads} on {web.url} + a qcluster (Redis {args.redis})")
        tokens = [jwt_headers(web.port, a["username"], password) for a in admins]
        for name in ("live", "request", "swap"):
            if name in which:
                run_section(res, name, {
                    "live": lambda: section_live(args, res, web, analyst, tokens[0]),
                    "request": lambda: section_request(args, res, web, tokens),
                    "swap": lambda: section_swap(args, res, web, tokens[0],
                                                 agent_create(env, f"bench-swap-{time.time():.0f}", any_host=True)),
                }[name])
    finally:
        stop_all([cluster, web])
        if res["errors"]:
            say(f"logs kept in {tmp}:\n{web.tail(10)}\n{cluster.tail(10)}")


def section_pickup(args, res: dict) -> None:
    """How long a press waits for a worker: the broker's part of press -> active."""
    out = res["pickup"] = {}
    for broker, redis in (("redis", args.redis), ("orm", "")):
        waits = pickup_waits(args, redis)
        out[broker] = {"presses": len(waits), "p50_s": percentile(waits, 50), "max_s": max(waits),
                       "waits_s": [round(w, 3) for w in waits]}
        res["figures"][f"pickup_{broker}_max_s"] = max(waits)
        say(f"pickup on {broker}: {out[broker]}")


def pickup_waits(args, redis: str) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-all-pickup-"))
    env = server_env(database=args.db_pickup, redis=redis, model_dir=tmp / "models", tmp=tmp,
                     extra={"RETRAIN_USER_RATE": "100000/h", "RETRAIN_GLOBAL_RATE": "100000/h"})
    if redis:
        redis_flush(redis)
    db_fresh(env)
    manage(env, "demo_data", "--days", "2")
    admin = {"username": "bench-pickup", "password": "bench-" + os.urandom(6).hex(), "group": "Security Admin"}
    users_create(env, [admin])
    web, cluster = Gunicorn(env, tmp / "gunicorn.log", workers=2, threads=2), QCluster(env, tmp / "qcluster.log")
    try:
        web.start()
        cluster.start()
        wait_for(lambda: web.request("GET", "/healthz")[1].get("worker") == "ok", 90, "the worker's heartbeat", every=1)
        token = jwt_headers(web.port, admin["username"], admin["password"])

        def run(path: str) -> dict:
            return web.request("GET", path, headers=token)[1]

        waits = []
        for i in range(args.presses):
            wait_for(lambda: runs_idle(web, token), 120, "the runs to end", every=0.5)
            time.sleep(random.uniform(0, 1))  # press at any point of the broker's poll cycle
            status, body = web.request("POST", "/api/axon/retrain", {"reason": f"all.py: pickup {i}"}, token)
            if status != 200 or body.get("status") != "training_started":
                raise RuntimeError(f"press {i} answered {status}: {body}")
            path = f"/api/axon/runs/{body['run_id']}/"
            wait_for(lambda p=path: run(p).get("started_at"), 60, "the run to start", 0.1)
            r = run(path)
            waits.append((datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
                          - datetime.fromisoformat(r["created_at"].replace("Z", "+00:00"))).total_seconds())
        return waits
    finally:
        stop_all([cluster, web])


def timed_gets(client: Http, path: str, n: int, seconds: float) -> dict:
    times, deadline = [], time.monotonic() + seconds
    for i in range(n + 3):  # three warm-ups
        if time.monotonic() > deadline:
            break
        answer = client.request("GET", path)
        if answer.status != 200:
            raise RuntimeError(f"GET {path} answered {answer.status}: {answer.body[:300]!r}")
        if i >= 3:
            times.append(answer.seconds * 1000)
    return {"n": len(times), "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "max_ms": max(times)}


def section_live(args, res: dict, web: Gunicorn, analyst: dict, admin_token: dict) -> None:
    page = Http(web.port, 60, session_headers(web.port, analyst["username"], analyst["password"]))
    api = Http(web.port, 60, admin_token)
    out = res["live"] = {"records": stored_records(args.db_ref)}
    for name, client, path in (("live_page", page, "/live-telemetry/"), ("summary_api", api, "/api/telemetry/summary/")):
        out[name] = timed_gets(client, path, args.live_requests, args.live_seconds)
        res["figures"][f"{name}_p95_ms"] = out[name]["p95_ms"]
        say(f"{path}: {out[name]} ({out['records']:,} records stored)")
        client.close()


def runs_idle(web: Gunicorn, token: dict) -> bool:
    return web.request("GET", "/api/axon/status/", headers=token)[1].get("current_run") is None


def section_request(args, res: dict, web: Gunicorn, tokens: list[dict]) -> None:
    res["request"] = {}
    for i, think in enumerate(float(x) for x in args.request_think.split(",")):
        out = res["request"][f"think_{think:g}"] = press_round(args, web, tokens, think)
        res["figures"]["retrain_request_p99_ms" if i == 0 else f"retrain_request_p99_ms_think_{think:g}"] = out["p99_ms"]


def press_round(args, web: Gunicorn, tokens: list[dict], think: float) -> dict:
    """Every client presses in a loop (`think` s +-50 % between presses) while a run is training."""
    wait_for(lambda: runs_idle(web, tokens[0]), 300, "the runs to end", every=1)
    status, body = web.request("POST", "/api/axon/retrain", {"reason": "all.py: request section"}, tokens[0])
    if status != 200:
        raise RuntimeError(f"the first press answered {status}: {body}")
    run = f"/api/axon/runs/{body['run_id']}/"
    wait_for(lambda: web.request("GET", run, headers=tokens[0])[1]["status"] == "running", 60, "the run to start", 0.2)
    lock, samples, end = threading.Lock(), [], time.monotonic() + args.request_seconds

    def client(token: dict) -> None:
        h = Http(web.port, 60, token)
        for _ in range(args.request_max):
            if time.monotonic() > end:
                break
            answer = h.request("POST", "/api/axon/retrain", b'{"reason": "all.py: concurrent press"}')
            with lock:
                samples.append((answer.seconds * 1000, answer.status,
                                answer.json().get("status", "") if answer.status == 200 else ""))
            if think:
                time.sleep(think * random.uniform(0.5, 1.5))
        h.close()

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in tokens[: args.request_clients]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.request_seconds + 120)
    ok = [ms for ms, code, _ in samples if code == 200]
    out = {"think_s": think, "clients": len(threads), "requests": len(samples),
           "codes": dict(collections.Counter(code for _, code, _ in samples)),
           "started": sum(1 for *_, st in samples if st == "training_started"),
           "already_running": sum(1 for *_, st in samples if st == "already_running"),
           "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99), "max_ms": max(ok, default=None)}
    say(f"retrain requests, think {think:g} s: {out}")
    wait_for(lambda: runs_idle(web, tokens[0]), 300, "the runs to end", every=1)
    return out


def known_host_snapshots(directory: Path, keep: int = 300):
    """Endless single-snapshot bodies of hosts the reference model knows (the scenario's last snapshots), each a
    second earlier than the last: unique, never in the future, and ordinary (no open flags pile up)."""
    with gzip.open(directory / "snapshots.jsonl.gz", "rt", encoding="utf-8") as f:
        tail = [json.loads(line) for line in collections.deque(f, maxlen=keep)]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    for i in range(10**9):
        yield encode({**tail[i % len(tail)], "timestamp": (base - timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")})


def pin_connections(web: Gunicorn, headers: dict, per_worker: int = 2) -> dict[int, list[Http]]:
    """Keep-alive connections, at least `per_worker` on each gunicorn worker (psutil says which owns which)."""
    import psutil

    workers, pinned = {p.pid for p in web.workers()}, collections.defaultdict(list)
    for _ in range(60):
        h = Http(web.port, 30, headers)
        h.request("GET", "/healthz")
        owner = next((pid for pid in workers if any(c.raddr and c.raddr.port == h.local_port
                                                    for c in psutil.Process(pid).net_connections("tcp"))), None)
        if owner is None or len(pinned[owner]) >= per_worker:
            h.close()
        else:
            pinned[owner].append(h)
        if len(pinned) == len(workers) and all(len(v) >= per_worker for v in pinned.values()):
            return pinned
    raise RuntimeError(f"could not reach every worker: {len(pinned)} of {len(workers)}")


def section_swap(args, res: dict, web: Gunicorn, token: dict, agent_key: str) -> None:
    versions = web.request("GET", "/api/axon/models/", headers=token)[1]["results"]
    active = next((v["version"] for v in versions if v.get("is_active")), None)
    other = next((v["version"] for v in versions if v["version"] != active), None)
    if active is None or other is None:
        raise RuntimeError(f"need an active model and another version: {versions}")
    bodies = known_host_snapshots(args.data / "ref")
    pinned = pin_connections(web, {"Authorization": f"Api-Key {agent_key}"})
    conns = [(pid, h) for pid, hs in pinned.items() for h in hs]
    out = res["swap"] = {"workers": len(pinned), "swaps": []}
    for target in ([other, active] * args.swaps)[: args.swaps]:
        for _, h in conns:  # every worker has served the current model first
            h.request("POST", SINGLE_PATH, next(bodies))
        posted: dict = {}
        t0 = time.perf_counter()

        def activate(version=target, posted=posted, t0=t0) -> None:
            posted["answer"] = web.request("POST", f"/api/axon/models/{version}/activate/", {}, token)
            posted["at"] = time.perf_counter() - t0

        activator = threading.Thread(target=activate, daemon=True)
        activator.start()  # the polls go on while the activation is in progress
        since: dict[int, float | None] = dict.fromkeys(pinned)  # since when only the new version
        while time.perf_counter() - t0 < args.swap_timeout:
            for pid, h in conns:
                answer = h.request("POST", SINGLE_PATH, next(bodies))
                if answer.status != 201:
                    raise RuntimeError(f"ingest answered {answer.status}: {answer.body[:200]!r}")
                on_target = answer.json()["model_version"] == target
                since[pid] = (since[pid] or time.perf_counter() - t0) if on_target else None
            if not activator.is_alive() and all(since.values()) and time.perf_counter() - t0 > max(since.values()) + 0.5:
                break
        activator.join(120)
        if posted.get("answer", (0,))[0] != 200:
            raise RuntimeError(f"activate v{target} answered {posted.get('answer')}")
        delay = max(since.values()) if all(since.values()) else None
        out["swaps"].append({"to": target, "delay_s": delay, "activate_s": posted["at"], "per_worker_s": since})
        say(f"swap to v{target}: every worker on it after "
            f"{f'NOT WITHIN {args.swap_timeout:g} s' if delay is None else f'{delay:.2f} s'}")
    for _, h in conns:
        h.close()
    delays = [s["delay_s"] for s in out["swaps"]]
    res["figures"]["swap_seconds"] = None if None in delays else max(delays)


# --- the run --------------------------------------------------------------------------------------------------


def run_section(res: dict, name: str, fn) -> None:
    started, load = time.monotonic(), os.getloadavg()
    say(f"=== {name} ===")
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - one section's failure is reported, the others still run
        res["errors"][name] = f"{type(exc).__name__}: {exc}"
        say(f"section {name} FAILED: {res['errors'][name]}")
    res["timing"][name] = {"seconds": time.monotonic() - started, "loadavg_before": load, "loadavg_after": os.getloadavg()}


def table(res: dict) -> str:
    lines = [f"{'figure':<40} {'value':>18}   {'target':<20} verdict"]
    for key, (title, target, fmt) in FIGURES.items():
        value = res["figures"].get(key)
        goal = f"{target[0]} {target[1]:,}" if target else "-"
        if value is None:
            verdict, shown = "not run", "-"
        else:
            shown = fmt.format(value)
            verdict = "-" if not target else "ok" if (value >= target[1] if target[0] == ">=" else value <= target[1]) else "MISS"
        lines.append(f"{title:<40} {shown:>18}   {goal:<20} {verdict}")
    lines.append("section wall time, load average (1 min) before -> after:")
    lines += [f"  {n:<8} {t['seconds']:7.0f} s   {t['loadavg_before'][0]:.2f} -> {t['loadavg_after'][0]:.2f}"
              for n, t in res["timing"].items()]
    lines += [f"  ERROR in {n}: {e}" for n, e in res["errors"].items()]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--json", default="", metavar="PATH")
    p.add_argument("--db-ref", default="postgres://127.0.0.1:5432/voltaxe_bench_ref")
    p.add_argument("--db-big", default="postgres://127.0.0.1:5432/voltaxe_bench_big")
    p.add_argument("--db-ingest", default="postgres://127.0.0.1:5432/voltaxe_bench")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "voltaxe-allbench",
                   help="scenario files, replay results and model files are kept here")
    p.add_argument("--workers", type=int, default=3, help="gunicorn workers for live/request/swap")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ingest-arg", action="append", default=[], help="an extra argument for ingest.py (repeatable)")
    p.add_argument("--fleetsim-arg", action="append", default=[],
                   help="an extra argument for fleetsim.py (repeatable), e.g. --fleetsim-arg=--hosts --fleetsim-arg=10")
    p.add_argument("--min-records", type=int, default=1_000_000, help="live/request/swap load the scenario below this")
    p.add_argument("--live-requests", type=int, default=50)
    p.add_argument("--live-seconds", type=float, default=120)
    p.add_argument("--request-clients", type=int, default=20)
    p.add_argument("--request-seconds", type=float, default=30)
    p.add_argument("--request-think", default="0,0.5", help="think times (s) between one client's presses; the "
                   "first gives the table's figure (0: each client presses again as soon as answered)")
    p.add_argument("--request-max", type=int, default=2000, help="presses per client at most")
    p.add_argument("--swaps", type=int, default=4)
    p.add_argument("--presses", type=int, default=8, help="presses per broker in the pickup section")
    p.add_argument("--db-pickup", default="postgres://127.0.0.1:5432/voltaxe_bench_pickup")
    p.add_argument("--swap-timeout", type=float, default=15)
    args = p.parse_args(argv)
    args.which = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.which - set(SECTIONS):
        p.error(f"unknown section(s): {', '.join(sorted(args.which - set(SECTIONS)))}")
    for url in (args.db_ref, args.db_big, args.db_ingest, args.db_pickup, args.redis):
        check_local(url, names=("bench",))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    res: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                 "sections": [s for s in SECTIONS if s in args.which], "figures": {}, "timing": {}, "errors": {}}
    started = time.monotonic()
    if "ingest" in args.which:
        run_section(res, "ingest", lambda: section_ingest(args, res))
    if "retrain" in args.which:
        run_section(res, "retrain", lambda: section_retrain(args, res, big=False))
    if args.which & {"live", "request", "swap"}:
        run_section(res, "stack", lambda: section_stack(args, res, args.which))
    if "big" in args.which:
        run_section(res, "big", lambda: section_retrain(args, res, big=True))
    if "pickup" in args.which:
        run_section(res, "pickup", lambda: section_pickup(args, res))
    print("\n" + "=" * 100 + "\n" + table(res))
    print(f"total {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs (other work on the machine skews every figure)")
    print("=" * 100)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

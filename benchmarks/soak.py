#!/usr/bin/env python3
"""Soak: a production-shaped stack under steady ingestion while a security admin keeps pressing the panic button.

    .venv/bin/python benchmarks/soak.py --minutes 10 --database postgres://127.0.0.1:5432/voltaxe_soak \
        --redis redis://127.0.0.1:6379/12 [--rate 20] [--press-every 120] [--json PATH]

The database (name containing "soak" or "bench") is created if missing, migrated and emptied, the Redis database
(10-14) emptied. gunicorn (--workers, --threads) starts with DATABASE_URL and REDIS_URL (the cache, the rate limits
and the django-q2 broker); --history-batches of 100 snapshots go in and a first model is trained; --qclusters
workers start. For --minutes, agents send --rate snapshots/s (half as single POSTs, half in batches of
--batch-size), a security admin presses POST /api/axon/retrain every --press-every s and follows the run, an
analyst reads the summary every --read-every s, and psutil samples every process's RSS. At the end (after waiting
for a run in flight) what was sent is compared with what is stored, snapshot by snapshot.

Exit status 1 on any 5xx, client error (timeout, reset), or snapshot sent but not stored (or stored short).
RETRAIN_USER_RATE and RETRAIN_GLOBAL_RATE are raised to twice the press rate, TOKEN_RATE to 1000/m.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import Fleet  # noqa: E402
from tests.harness import (  # noqa: E402
    BATCH_PATH,
    SINGLE_PATH,
    Gunicorn,
    Http,
    QCluster,
    agent_create,
    check_local,
    db_fresh,
    encode,
    ingest_batches,
    jwt_headers,
    manage,
    percentile,
    redis_flush,
    say,
    server_env,
    stop_all,
    users_create,
    wait_for,
)

MIB = 1024 * 1024


class Recorder:
    """Status codes (or exception names) and latencies per endpoint, from every client thread."""

    def __init__(self, t0: float):
        self.t0, self.lock = t0, threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.codes: dict[str, Counter] = defaultdict(Counter)
        self.notes: list[str] = []

    def call(self, client: Http, endpoint: str, method: str, path: str, body=None, headers=None):
        """The answer, or None after recording the exception (the caller reconnects)."""
        try:
            answer = client.request(method, path, body, headers)
        except Exception as exc:  # noqa: BLE001 - a timeout or reset is a finding, not a crash
            self.add(endpoint, type(exc).__name__, None)
            client.close()
            return None
        self.add(endpoint, answer.status, answer.seconds, answer.body)
        return answer

    def add(self, endpoint: str, status: int | str, seconds: float | None, body: bytes = b"") -> None:
        with self.lock:
            self.codes[endpoint][status] += 1
            if seconds is not None:
                self.lat[endpoint].append(seconds * 1000)
            if (isinstance(status, str) or status >= 500) and len(self.notes) < 20:
                self.notes.append(f"{time.monotonic() - self.t0:.0f}s {endpoint} {status}: {body[:300]!r}")

    def count(self, bad) -> int:
        return sum(n for c in self.codes.values() for code, n in c.items() if bad(code))


class RssSampler(threading.Thread):
    """Every `every` s, the RSS of gunicorn (master, workers) and of each qcluster and its children."""

    def __init__(self, web: Gunicorn, clusters: list[QCluster], every: float, stop: threading.Event):
        super().__init__(daemon=True, name="rss")
        self.web, self.clusters, self.every, self.stop = web, clusters, every, stop
        self.series: dict[str, list[float]] = defaultdict(list)  # "role pid" -> MiB over time

    def run(self) -> None:
        import psutil

        while not self.stop.wait(self.every):
            roots = [("gunicorn", self.web.pid)] + [(f"qcluster{i}", q.pid) for i, q in enumerate(self.clusters, 1)]
            for role, pid in roots:
                try:
                    root = psutil.Process(pid)
                    for p in [root, *root.children(recursive=True)]:
                        self.series[f"{role} {p.pid}"].append(p.memory_info().rss / MIB)
                except psutil.Error:
                    pass

    def lines(self) -> list[str]:
        return [f"  {label:<22} first {s[0]:6.0f}  last {s[-1]:6.0f}  max {max(s):6.0f} MiB  ({len(s)} samples)"
                for label, s in sorted(self.series.items())]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--database", default="postgres://127.0.0.1:5432/voltaxe_soak")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    p.add_argument("--rate", type=float, default=20, help="snapshots per second, in total")
    p.add_argument("--press-every", type=float, default=120, help="seconds between panic-button presses")
    p.add_argument("--processes", type=int, default=100, help="processes per snapshot")
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--single-agents", type=int, default=4, help="threads posting single snapshots (half the rate)")
    p.add_argument("--batch-agents", type=int, default=2, help="threads posting batches (the other half)")
    p.add_argument("--batch-size", type=int, default=10, choices=range(1, 101), metavar="1..100")
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    p.add_argument("--qclusters", type=int, default=2)
    p.add_argument("--history-batches", type=int, default=20, help="batches of 100 snapshots before the first model")
    p.add_argument("--read-every", type=float, default=10, help="seconds between the analyst's summary reads")
    p.add_argument("--sample-every", type=float, default=5, help="seconds between RSS samples")
    p.add_argument("--timeout", type=float, default=60, help="per-request timeout")
    p.add_argument("--json", default="", metavar="PATH")
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args(argv)
    if min(args.minutes, args.rate, args.press_every) <= 0:
        p.error("--minutes, --rate and --press-every must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check_local(args.database, names=("soak", "bench"))
    check_local(args.redis)
    tmp = Path(tempfile.mkdtemp(prefix="voltaxe-soak-"))
    rate = f"{max(2, math.ceil(3600 / args.press_every * 2))}/h"
    env = server_env(database=args.database, redis=args.redis, model_dir=tmp / "models", tmp=tmp,
                     extra={"RETRAIN_USER_RATE": rate, "RETRAIN_GLOBAL_RATE": rate, "TOKEN_RATE": "1000/m",
                            "JWT_ACCESS_MINUTES": str(math.ceil(args.minutes) + 30)})  # one token for the whole soak
    say(f"soak: {args.minutes:g} min at {args.rate:g} snapshots/s x {args.processes} processes, a press every "
        f"{args.press_every:g} s (retrain rates {rate}); logs in {tmp}")
    web = Gunicorn(env, tmp / "gunicorn.log", workers=args.workers, threads=args.threads)
    clusters = [QCluster(env, tmp / f"qcluster-{i}.log") for i in range(1, args.qclusters + 1)]
    result: dict = {"args": vars(args), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    ok = False
    try:
        redis_flush(args.redis)
        db_fresh(env)
        key = agent_create(env, "soak-agent", any_host=True)  # a relay: the simulated fleet reports through one key
        admin = {"username": "soak-admin", "password": secrets.token_urlsafe(12), "group": "Security Admin"}
        users_create(env, [admin])
        web.start()
        fleet = Fleet(args.hosts, args.processes, 7, seed=11)
        fleet.odd_rate = 0.0
        history = [encode(fleet.batch(100)) for _ in range(args.history_batches)]
        fleet.odd_rate = 0.05
        h = ingest_batches(web.port, key, history, clients=2, duration=900, timeout=args.timeout)
        say(f"history: {h['records']:,} records in {h['seconds']:.1f} s; first model")
        say(manage(env, "retrain", "--sync", "--wait", "--timeout", "600", "--reason", "soak: first model",
                   timeout=900).stdout.strip().splitlines()[-1])
        for q in clusters:
            q.start()

        def worker_alive() -> bool:
            return web.request("GET", "/healthz")[1].get("worker") == "ok"

        wait_for(worker_alive, 90, "the qcluster workers' heartbeat", every=1)
        say(f"gunicorn -w {args.workers} --threads {args.threads} and {args.qclusters} qclusters up; soaking")
        result.update(soak(args, web, clusters, key, admin, fleet))
        ok = result["ok"]
    except Exception as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        for p in (web, *clusters):
            print(f"--- {p.log.name} ---\n{p.tail(20)}", file=sys.stderr)
    finally:
        stop_all([*clusters, web])
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if ok and not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        say(f"kept {tmp} (logs)")
    say(f"{'OK' if ok else 'FAILED'}; load average {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


def soak(args, web: Gunicorn, clusters: list[QCluster], key: str, admin: dict, fleet: Fleet) -> dict:
    t0 = time.monotonic()
    end, stop, rec = t0 + args.minutes * 60, threading.Event(), Recorder(t0)
    gen_lock = threading.Lock()
    sent: dict[tuple[str, str], int] = {}  # (hostname, timestamp) -> processes
    acked: set[tuple[str, str]] = set()
    versions_seen: dict[int, Counter] = defaultdict(Counter)  # minute -> model_version -> answers
    presses: list[dict] = []
    bearer = {**jwt_headers(web.port, admin["username"], admin["password"])}
    agent_headers = {"Authorization": f"Api-Key {key}"}

    def generate(n: int) -> list[dict]:
        with gen_lock:
            snaps = fleet.batch(n)
            sent.update({(s["hostname"], s["timestamp"]): len(s["processes"]) for s in snaps})
        return snaps

    def acknowledge(snap: dict, result: dict) -> None:
        if "error" not in result:
            with rec.lock:
                acked.add((snap["hostname"], snap["timestamp"]))
                versions_seen[int((time.monotonic() - t0) // 60)][result.get("model_version")] += 1

    def agent(batch: int, per_second: float, offset: float) -> None:
        client = Http(web.port, args.timeout, agent_headers)
        path, endpoint = (SINGLE_PATH, "POST snapshot") if batch == 1 else (BATCH_PATH, "POST batch")
        interval = batch / per_second
        next_t = t0 + interval * offset
        while not stop.wait(max(0.0, next_t - time.monotonic())) and time.monotonic() < end:
            next_t = max(next_t + interval, time.monotonic() - interval)  # behind schedule: do not burst
            snaps = generate(batch)
            answer = rec.call(client, endpoint, "POST", path, encode(snaps[0] if batch == 1 else snaps))
            if answer is not None and answer.status in (200, 201):
                results = [answer.json()] if batch == 1 else answer.json()["results"]
                for snap, result in zip(snaps, results):
                    acknowledge(snap, result)
        client.close()

    def press() -> None:
        client = Http(web.port, args.timeout, bearer)
        next_press = t0 + min(30.0, args.press_every / 2)
        while not stop.wait(max(0.0, next_press - time.monotonic())) and time.monotonic() < end:
            next_press += args.press_every
            answer = rec.call(client, "POST retrain", "POST", "/api/axon/retrain", {"reason": f"soak {len(presses) + 1}"})
            if answer is None:
                continue
            entry = {"t": round(time.monotonic() - t0), "http": answer.status, "ms": round(answer.seconds * 1000, 1)}
            presses.append(entry)
            if answer.status != 200:
                continue
            entry.update(status=answer.json()["status"], run_id=answer.json()["run_id"])
            while not stop.wait(2.0) and time.monotonic() < min(next_press, end + 120):  # follow the run
                run = rec.call(client, "GET run", "GET", f"/api/axon/runs/{entry['run_id']}/")
                if run is not None and run.status == 200 and run.json()["status"] not in ("queued", "running"):
                    entry.update(run_status=run.json()["status"], model_version=run.json()["model_version"],
                                 ended_after_s=round(time.monotonic() - t0 - entry["t"]))
                    break
            say(f"press {len(presses)}: {entry}")
        client.close()

    def read() -> None:
        client = Http(web.port, args.timeout, bearer)
        while not stop.wait(args.read_every) and time.monotonic() < end:
            rec.call(client, "GET summary", "GET", "/api/telemetry/summary/")
        client.close()

    half, agents = args.rate / 2, args.single_agents + args.batch_agents
    plan = [(1, half / args.single_agents)] * args.single_agents
    plan += [(args.batch_size, half / args.batch_agents)] * args.batch_agents
    threads = [threading.Thread(target=agent, args=(size, per_s, i / agents), daemon=True)
               for i, (size, per_s) in enumerate(plan)]
    threads += [threading.Thread(target=press, daemon=True), threading.Thread(target=read, daemon=True)]
    sampler = RssSampler(web, clusters, args.sample_every, stop)
    for t in [*threads, sampler]:
        t.start()
    try:
        while time.monotonic() < end:
            time.sleep(min(60.0, max(0.1, end - time.monotonic())))
            say(f"{len(sent):,} snapshots sent, {len(acked):,} acknowledged, "
                f"{rec.count(lambda c: isinstance(c, str) or c >= 500)} 5xx/errors; load {os.getloadavg()[0]:.2f}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=args.timeout + 130)
    seconds = time.monotonic() - t0
    say("load stopped; waiting (at most 180 s) for a run in flight")

    def runs() -> list[dict]:
        return web.request("GET", "/api/axon/runs/", headers=bearer)[1]["results"]

    try:
        wait_for(lambda: not any(r["status"] in ("queued", "running") for r in runs()), 180, "the last run", every=2)
    except AssertionError as exc:
        say(str(exc))
    return report(args, rec, sampler, sent, acked, presses, versions_seen, runs(), seconds)


def stored_snapshots(database: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(hostname, timestamp) -> (process_count, records stored), read straight from PostgreSQL."""
    import psycopg2

    conn = psycopg2.connect(database)
    try:
        with conn.cursor() as c:
            c.execute(
                "SELECT e.hostname, to_char(s.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                "s.process_count, (SELECT count(*) FROM telemetry_processrecord r WHERE r.snapshot_id = s.id) "
                "FROM telemetry_snapshot s JOIN telemetry_endpoint e ON e.id = s.endpoint_id")
            return {(host, ts): (count, records) for host, ts, count, records in c.fetchall()}
    finally:
        conn.close()


def report(args, rec: Recorder, sampler: RssSampler, sent, acked, presses, versions_seen, runs, seconds) -> dict:
    stored = stored_snapshots(args.database)
    lost = [k for k in sent if k not in stored]
    short = [k for k in sent if k in stored and stored[k] != (sent[k], sent[k])]
    acked_lost = [k for k in acked if k not in stored]
    n5xx, errors = rec.count(lambda c: isinstance(c, int) and c >= 500), rec.count(lambda c: isinstance(c, str))
    print("\n" + "=" * 100)
    print(f"SOAK: {seconds / 60:.1f} min, {len(sent) / seconds:.1f} snapshots/s achieved (target {args.rate:g}), "
          f"{args.processes} processes each; gunicorn -w {args.workers} --threads {args.threads}, {args.qclusters} qclusters")
    print(f"requests: 5xx {n5xx}, client errors (timeout/reset) {errors}; load average {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print(f"snapshots: sent {len(sent):,}, acknowledged {len(acked):,}; LOST {len(lost)}, acknowledged but not stored "
          f"{len(acked_lost)}, stored short {len(short)}; e.g. {(lost + short)[:3]}")
    print(f"{'endpoint':<16} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  codes")
    for ep in sorted(rec.codes):
        lat = rec.lat.get(ep, [])
        print(f"{ep:<16} {sum(rec.codes[ep].values()):>8} {percentile(lat, 50):8.1f} {percentile(lat, 95):8.1f} "
              f"{percentile(lat, 99):8.1f}  {dict(rec.codes[ep])}")
    for note in rec.notes:
        print(f"  ! {note}")
    print(f"presses: {Counter(p.get('status', p['http']) for p in presses)}; runs: {Counter(r['status'] for r in runs)}")
    print("model_version answered, per minute:", "; ".join(f"{m}: {dict(c)}" for m, c in sorted(versions_seen.items())))
    print("RSS:")
    print("\n".join(sampler.lines()))
    print("=" * 100, flush=True)
    return {"ok": not (n5xx or errors or lost or short or acked_lost), "seconds": seconds, "5xx": n5xx,
            "client_errors": errors, "sent": len(sent), "acknowledged": len(acked), "lost": len(lost),
            "short": len(short), "acked_lost": len(acked_lost), "codes": {e: dict(c) for e, c in rec.codes.items()},
            "latency_ms": {e: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for e, v in rec.lat.items()},
            "presses": presses, "runs": runs, "notes": rec.notes,
            "rss_mib": {label: {"first": s[0], "last": s[-1], "max": max(s)} for label, s in sampler.series.items()}}


if __name__ == "__main__":
    sys.exit(main())

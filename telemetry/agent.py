"""A real agent: this machine's processes, read with psutil, in the ingestion payload format."""
from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime

import psutil

_FIELDS = ["pid", "ppid", "name", "exe", "username", "cmdline", "cpu_percent", "memory_info"]


def snapshot_collect(*, hostname: str | None = None) -> dict:
    processes = []
    for proc in psutil.process_iter(_FIELDS):
        info = proc.info
        if not info.get("name"):
            continue
        memory = info.get("memory_info")
        processes.append({
            "name": info["name"],
            "pid": info.get("pid"),
            "ppid": info.get("ppid"),
            "exe": info.get("exe") or "",
            "username": info.get("username") or "",
            "cmdline": " ".join(info.get("cmdline") or [])[:32768],
            "cpu_percent": float(info.get("cpu_percent") or 0.0),
            "memory_rss": int(memory.rss) if memory else None,
        })
    return {
        "hostname": hostname or socket.gethostname(),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "os": {"win32": "windows", "darwin": "darwin"}.get(sys.platform, "linux"),
        "processes": processes,
    }


def _post(path: str, body, *, server: str, key: str, timeout: float):
    """POST JSON with the agent key; the answer, or RuntimeError with the server's sentence."""
    request = urllib.request.Request(
        server.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            detail = json.loads(text).get("detail", text)
        except ValueError:
            detail = text[:200]
        raise RuntimeError(f"The server answered {exc.code}: {detail}") from exc


def snapshot_send(payload: dict, *, server: str, key: str, timeout: float = 30) -> dict:
    return _post("/api/telemetry/snapshots/", payload, server=server, key=key, timeout=timeout)


def events_send(events: list[dict], *, server: str, key: str, timeout: float = 30) -> list[dict]:
    """A batch of process starts to /api/telemetry/events/; the per-event results."""
    return _post("/api/telemetry/events/", events, server=server, key=key, timeout=timeout)["results"]

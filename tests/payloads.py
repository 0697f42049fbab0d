"""Payload builders for tests."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta


def ts(minutes_ago: float = 0) -> str:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return t.isoformat().replace("+00:00", "Z")


def rich(hostname: str = "host-a", *, minutes_ago: float = 0, processes: list | None = None, os_name: str = "linux") -> dict:
    return {
        "hostname": hostname,
        "timestamp": ts(minutes_ago),
        "os": os_name,
        "processes": processes if processes is not None else [
            {"name": "systemd", "pid": 1, "ppid": 0, "exe": "/usr/lib/systemd/systemd", "username": "root",
             "cmdline": "/sbin/init", "cpu_percent": 0.1, "memory_rss": 12_000_000},
            {"name": "sshd", "pid": 800, "ppid": 1, "exe": "/usr/sbin/sshd", "username": "root",
             "cpu_percent": 0.0, "memory_rss": 9_000_000},
            {"name": "bash", "pid": 900, "ppid": 800, "exe": "/usr/bin/bash", "username": "deploy"},
        ],
    }


def legacy(hostname: str = "kali", *, minutes_ago: float = 0) -> dict:
    return {"hostname": hostname, "timestamp": ts(minutes_ago), "processes": ["systemd", "bash", "bash"]}

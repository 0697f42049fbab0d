"""Process starts in the formats people already ship: Sysmon event 1 and ECS, converted to the API's event.

Sysmon (Microsoft Sysinternals, event ID 1 "Process creation"), as Windows event forwarding tools
export it to JSON: the event's data fields flat beside ``EventID`` (or under ``EventData``).
``UtcTime`` is ``2026-11-26 09:00:00.123`` in UTC; ``Hashes`` lists the configured algorithms as
``SHA1=…,MD5=…,SHA256=…,IMPHASH=…``.

ECS (Elastic Common Schema), as Winlogbeat and Elastic Agent ship it: nested objects or dotted
keys (``process.parent.executable``). A process start is ``event.code`` "1" (Sysmon through
Winlogbeat) or an event of category ``process`` and type ``start`` (Elastic Defend, auditd).

Each converter returns, per record, the event (API.md's fields), ``None`` for a record that is
not a process start (counted as skipped), or a refusal naming the record and the source field.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The API field an error names -> the source's field, so a refusal names what the sender sent.
SYSMON_FIELDS = {"hostname": "Computer", "timestamp": "UtcTime", "name": "Image", "pid": "ProcessId",
                 "ppid": "ParentProcessId", "exe": "Image", "cmdline": "CommandLine", "username": "User",
                 "parent_exe": "ParentImage", "parent_name": "ParentImage", "sha256": "Hashes"}
ECS_FIELDS = {"hostname": "host.name", "timestamp": "@timestamp", "name": "process.name", "pid": "process.pid",
              "ppid": "process.parent.pid", "exe": "process.executable", "cmdline": "process.command_line",
              "username": "user.name", "parent_exe": "process.parent.executable", "parent_name": "process.parent.name",
              "sha256": "process.hash.sha256", "os": "host.os.type"}


class Refused(ValueError):
    """A record that cannot be used: the message names the source field."""


@dataclass
class Format:
    name: str
    convert: Callable[[dict], dict | None]
    fields: dict[str, str]


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _number(value, field: str):
    """Sysmon and some shippers write pids as strings."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if value is None or value == "":
        return None
    if isinstance(value, str):
        raise Refused(f"{field} is {value!r}, not a process id")
    return value


def sysmon_event(record: dict) -> dict | None:
    data = dict(record)
    for nested in ("EventData", "event_data"):
        if isinstance(record.get(nested), dict):
            data.update(record[nested])
    event_id = data.get("EventID", data.get("EventId"))
    if isinstance(event_id, dict):  # some exports keep the XML's {"#text": "1"}
        event_id = event_id.get("#text")
    if event_id is None:
        raise Refused("EventID is missing: a Sysmon record names its event type (1 is a process start)")
    if str(event_id).strip() != "1":
        return None
    utc = data.get("UtcTime")
    if isinstance(utc, str):
        utc = utc.strip().replace(" ", "T", 1)
        utc += "" if utc.endswith("Z") or "+" in utc[10:] else "Z"
    image = data.get("Image")
    parent = data.get("ParentImage")
    return {
        "hostname": data.get("Computer", data.get("Hostname")),
        "timestamp": utc,
        "name": _basename(image) if isinstance(image, str) and image.strip() else image,
        "exe": image, "cmdline": data.get("CommandLine"),
        "pid": _number(data.get("ProcessId"), "ProcessId"), "ppid": _number(data.get("ParentProcessId"), "ParentProcessId"),
        "username": data.get("User"),
        "parent_exe": parent, "parent_name": _basename(parent) if isinstance(parent, str) else None,
        "sha256": _sysmon_sha256(data.get("Hashes")), "os": "windows",
    }


def _sysmon_sha256(hashes) -> str | None:
    if hashes is None or hashes == "":
        return None
    if not isinstance(hashes, str):
        raise Refused(f"Hashes must be text such as \"SHA256=…,MD5=…\", not {type(hashes).__name__}")
    for part in hashes.split(","):
        algorithm, _, value = part.partition("=")
        if algorithm.strip().upper() == "SHA256":
            return value.strip()
    return None  # the host's Sysmon is configured without SHA256: kept without a hash


def _get(record: dict, dotted: str):
    """ECS fields nested ({"process": {"parent": {"pid": 1}}}) or dotted ({"process.parent.pid": 1})."""
    if dotted in record:
        return record[dotted]
    value: object = record
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict):
            return None
        rest = ".".join(parts[i:])
        if rest in value:  # a dotted key inside a nested object
            return value[rest]
        value = value.get(part)
    return value


def _listed(value) -> set[str]:
    if isinstance(value, str):
        return {value}
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def ecs_event(record: dict) -> dict | None:
    code = _get(record, "event.code")
    start = "process" in _listed(_get(record, "event.category")) and "start" in _listed(_get(record, "event.type"))
    if str(code).strip() != "1" and not start:
        return None
    name, exe = _get(record, "process.name"), _get(record, "process.executable")
    if name is None and isinstance(exe, str) and exe.strip():
        name = _basename(exe)
    user, domain = _get(record, "user.name"), _get(record, "user.domain")
    if isinstance(user, str) and isinstance(domain, str) and domain and "\\" not in user:
        user = f"{domain}\\{user}"  # as Sysmon's User and a snapshot agent on Windows write it
    parent_exe, parent_name = _get(record, "process.parent.executable"), _get(record, "process.parent.name")
    os_name = _get(record, "host.os.type") or _get(record, "host.os.family") or _get(record, "host.os.platform")
    return {
        "hostname": _get(record, "host.name") or _get(record, "host.hostname"),
        "timestamp": _get(record, "@timestamp"),
        "name": name, "exe": exe, "cmdline": _get(record, "process.command_line"),
        "pid": _number(_get(record, "process.pid"), "process.pid"),
        "ppid": _number(_get(record, "process.parent.pid"), "process.parent.pid"),
        "username": user, "parent_exe": parent_exe,
        "parent_name": parent_name if parent_name is not None or not isinstance(parent_exe, str) else _basename(parent_exe),
        "sha256": _get(record, "process.hash.sha256"), "os": os_name if isinstance(os_name, str) else None,
    }


SYSMON = Format("Sysmon", sysmon_event, SYSMON_FIELDS)
ECS = Format("ECS", ecs_event, ECS_FIELDS)

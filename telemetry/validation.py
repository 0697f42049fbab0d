"""Validation of snapshot payloads (rich and legacy shapes).

Hand-written rather than a serializer: one snapshot can hold thousands of
processes and this runs on every request, so it must be cheap; and every error
must name the field and say what to send instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MAX_HOSTNAME = 255
MAX_OS = 32
MAX_NAME = 255
MAX_EXE = 2048
MAX_USERNAME = 255
MAX_CMDLINE = 32768
MAX_PID = 2**63 - 1
MAX_CPU = 100_000.0  # percent; 100 per core on hosts with up to 1000 cores
MAX_RSS = 2**63 - 1
OLDEST = datetime(2000, 1, 1, tzinfo=UTC)


class PayloadError(ValueError):
    """The payload cannot be stored; `errors` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        first_field, messages = next(iter(errors.items()))
        more = len(errors) - 1
        tail = f" ({more} more field{'s' if more != 1 else ''} listed in errors)" if more else ""
        self.detail = f"{first_field}: {messages[0]}{tail}. Nothing of this snapshot was stored; fix it and send it again."
        super().__init__(self.detail)


@dataclass(slots=True)
class ProcessIn:
    name: str
    pid: int | None = None
    ppid: int | None = None
    exe: str = ""
    username: str = ""
    cmdline: str = ""
    cpu_percent: float | None = None
    memory_rss: int | None = None


@dataclass(slots=True)
class SnapshotIn:
    hostname: str
    timestamp: datetime
    os: str
    processes: list[ProcessIn] = field(default_factory=list)


def _text(value, path: str, errors: dict, *, max_length: int, required: bool = False) -> str:
    if value is None:
        if required:
            errors.setdefault(path, []).append("this field is required")
        return ""
    if not isinstance(value, str):
        errors.setdefault(path, []).append(f"must be a string, not {_type_name(value)}")
        return ""
    if "\x00" in value:
        errors.setdefault(path, []).append("must not contain NUL bytes")
        return ""
    if not encodable(value):
        errors.setdefault(path, []).append("must be valid Unicode text (it holds an unpaired surrogate escape)")
        return ""
    if len(value) > max_length:
        errors.setdefault(path, []).append(f"is {len(value)} characters long; at most {max_length} are allowed")
        return ""
    if required and not value.strip():
        errors.setdefault(path, []).append("must not be empty")
        return ""
    return value


# The same checks for other agent bodies (the Sentinel's host report).
text_field = _text


def encodable(value: str) -> bool:
    """JSON can carry lone UTF-16 surrogates (\\ud800) that no database can store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _integer(value, path: str, errors: dict, *, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            errors.setdefault(path, []).append(f"must be a whole number, not {_type_name(value)}")
            return None
    if value < 0 or value > maximum:
        errors.setdefault(path, []).append(f"must be between 0 and {maximum}")
        return None
    return value


def _number(value, path: str, errors: dict, *, maximum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.setdefault(path, []).append(f"must be a number, not {_type_name(value)}")
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > maximum:
        errors.setdefault(path, []).append(f"must be a number between 0 and {maximum:g}")
        return None
    return value


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def parse_timestamp(value, path: str, errors: dict, *, now: datetime, max_future: timedelta) -> datetime | None:
    if value is None:
        errors.setdefault(path, []).append("this field is required")
        return None
    if not isinstance(value, str):
        errors.setdefault(path, []).append(
            f"must be an ISO 8601 time string such as 2026-11-26T09:00:00Z, not {_type_name(value)}")
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        if parsed.tzinfo is None:
            # The contract's times are UTC; agents that leave the zone out mean UTC.
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 or 9999 shifted out of range by its offset
        errors.setdefault(path, []).append("is not an ISO 8601 time; send e.g. 2026-11-26T09:00:00Z")
        return None
    if parsed > now + max_future:
        errors.setdefault(path, []).append(
            f"is in the future ({parsed:%Y-%m-%dT%H:%M:%SZ}, server time {now:%Y-%m-%dT%H:%M:%SZ}); check the agent's clock"
        )
        return None
    if parsed < OLDEST:
        errors.setdefault(path, []).append("is before the year 2000; check the agent's clock")
        return None
    return parsed


def validate_snapshot(data, *, now: datetime, max_processes: int, max_future: timedelta) -> SnapshotIn:
    """Check one payload; raise PayloadError naming every bad field, or return it cleaned."""
    if not isinstance(data, dict):
        raise PayloadError({"non_field_errors": [f"a snapshot must be a JSON object, not {_type_name(data)}"]})
    errors: dict[str, list[str]] = {}
    hostname = _text(data.get("hostname"), "hostname", errors, max_length=MAX_HOSTNAME, required=True).strip()
    timestamp = parse_timestamp(data.get("timestamp"), "timestamp", errors, now=now, max_future=max_future)
    os_name = _text(data.get("os"), "os", errors, max_length=MAX_OS).strip().lower()
    if len(os_name) > MAX_OS:  # some letters grow when lower-cased
        errors.setdefault("os", []).append(f"is longer than {MAX_OS} characters")
    raw = data.get("processes")
    processes: list[ProcessIn] = []
    if raw is None and "processes" in data:
        # What a Voltaxe Sentinel sends when it could not list processes: say so, instead of "required".
        errors["processes"] = ["is null: the agent could not list its processes, so there is nothing to store; "
                               "send a list of process names or objects"]
    elif raw is None:
        errors["processes"] = ["this field is required"]
    elif not isinstance(raw, list):
        errors["processes"] = [f"must be a list of processes, not {_type_name(raw)}"]
    elif not raw:
        errors["processes"] = ["must list at least one process"]
    elif len(raw) > max_processes:
        errors["processes"] = [f"has {len(raw)} processes; at most {max_processes} are allowed in one snapshot"]
    else:
        for i, item in enumerate(raw):
            path = f"processes[{i}]"
            if isinstance(item, str):  # legacy shape: a bare process name
                name = _text(item, path, errors, max_length=MAX_NAME, required=True)
                processes.append(ProcessIn(name=name.strip()))
            elif isinstance(item, dict):
                processes.append(ProcessIn(
                    name=_text(item.get("name"), f"{path}.name", errors, max_length=MAX_NAME, required=True).strip(),
                    pid=_integer(item.get("pid"), f"{path}.pid", errors, maximum=MAX_PID),
                    ppid=_integer(item.get("ppid"), f"{path}.ppid", errors, maximum=MAX_PID),
                    exe=_text(item.get("exe"), f"{path}.exe", errors, max_length=MAX_EXE),
                    username=_text(item.get("username"), f"{path}.username", errors, max_length=MAX_USERNAME),
                    cmdline=_text(item.get("cmdline"), f"{path}.cmdline", errors, max_length=MAX_CMDLINE),
                    cpu_percent=_number(item.get("cpu_percent"), f"{path}.cpu_percent", errors, maximum=MAX_CPU),
                    memory_rss=_integer(item.get("memory_rss"), f"{path}.memory_rss", errors, maximum=MAX_RSS),
                ))
            else:
                errors.setdefault(path, []).append(
                    f"must be a process object with a name, or a process name string, not {_type_name(item)}"
                )
            if len(errors) >= 20:
                break
    if errors:
        raise PayloadError(errors)
    assert timestamp is not None  # no error means it parsed
    return SnapshotIn(hostname=hostname, timestamp=timestamp, os=os_name, processes=processes)

"""What an operator's approvals cover. Pure: no Django.

An approval names a program on a host: (host, name, exe, parent, script), all normalized.
What it covers, so that one press is not followed by a flood of near-identical flags, and
not by a blank cheque either:

* A program (not an interpreter) is approved by name and path on its host, under any
  parent: an approved app started from a new launcher is not news by itself. Except a parent
  that should not start programs at all (a web server, an office program, a script host)
  when that is not the parent approved: that start is judged on its own.
* Its own helpers and updaters: any program on the same host that runs from inside the
  approved program's install folder. The install folder is the folder named after the
  program (``...\\Figma\\Figma.exe`` → ``...\\Figma\\``; ``/Applications/Obsidian.app/...``),
  never a shared system folder (``System32``, ``/usr/bin``: no folder named after the
  program) and never a temporary or world-writable one.
* An interpreter (``python3``, ``powershell.exe``, ``bash``...) is approved with the script
  it ran: approving ``python3 /opt/app/manage.py`` does not approve ``python3 -c 'import
  socket...'``. Approvals made before scripts were told apart (script ``None``) keep their
  old meaning: exactly that host, name, path and parent, whatever the script.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from axon.detector.risk import in_temp_folder, risky_parent
from telemetry.normalize import is_interpreter

_ALNUM = re.compile(r"[^a-z0-9]")


def install_folder(exe: str, name: str) -> str:
    """The folder named after the program that holds it (with its trailing separator), or "" if none."""
    sep = "\\" if "\\" in exe else "/"
    parts = exe.split(sep)
    stem = _ALNUM.sub("", name.lower().rsplit(".", 1)[0] if name.lower().endswith(".exe") else name.lower())
    if len(stem) < 3 or len(parts) < 3:
        return ""
    # Look at most three folders up: the bundle, "Application", "Contents/MacOS".
    for i in range(len(parts) - 2, max(0, len(parts) - 5), -1):
        folder = _ALNUM.sub("", parts[i].lower().removesuffix(".app"))
        if len(folder) >= 3 and (stem in folder or folder in stem):
            found = sep.join(parts[:i + 1]) + sep
            return "" if in_temp_folder(found) else found
    return ""


class ApprovedSet:
    """Approval keys, matched against a batch (``mask``)."""

    def __init__(self, keys: Iterable[tuple]) -> None:
        self.keys = frozenset(tuple(k) for k in keys)
        self.programs: dict[tuple[str, str, str], set[str]] = {}  # -> the parents approved
        self.scripts: set[tuple[str, str, str, str]] = set()
        self.legacy: set[tuple[str, str, str, str]] = set()
        self.folders: dict[str, tuple[str, ...]] = {}
        for key in self.keys:
            host, name, exe, parent = key[:4]
            script = key[4] if len(key) > 4 else None
            if is_interpreter(name):
                if script is None:
                    self.legacy.add((host, name, exe, parent))
                else:
                    self.scripts.add((host, name, exe, script))
                continue
            self.programs.setdefault((host, name, exe), set()).add(parent)
            folder = install_folder(exe, name)
            if folder:
                self.folders[host] = (*self.folders.get(host, ()), folder)

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def covers(self, host: str, name: str, exe: str, parent: str, script: str) -> bool:
        if is_interpreter(name):
            return (host, name, exe, script) in self.scripts or (host, name, exe, parent) in self.legacy
        parents = self.programs.get((host, name, exe))
        if parents is not None and (parent in parents or not risky_parent(parent, name)):
            return True
        return (bool(exe) and any(exe.startswith(f) for f in self.folders.get(host, ()))
                and not risky_parent(parent, name))

    def mask(self, batch) -> np.ndarray:
        """Rows of an ObservationBatch that an approval covers."""
        if not self.keys:
            return np.zeros(len(batch), dtype=bool)
        cache: dict[tuple, bool] = {}
        out = np.zeros(len(batch), dtype=bool)
        for i, key in enumerate(zip(batch.host, batch.name, batch.exe, batch.parent, batch.script)):
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self.covers(*key)
            out[i] = hit
        return out

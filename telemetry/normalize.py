"""Normalization of process names and executable paths.

Pure functions (no Django): the model groups observations by these keys, so two
spellings of the same program must meet under one key, and two different
programs must never do so.
"""
from __future__ import annotations

import re

CASE_INSENSITIVE_OS = {"windows", "darwin"}

# `kworker/0:1-events`, `ksoftirqd/3`, `kworker/R-rcu_gp`: kernel threads carry
# their CPU and work queue after a slash; the thread kind is what matters.
_KERNEL_THREAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)/[^/\s]*$")
# `postgres: checkpointer`, `sshd: deploy@pts/0`: a program that rewrites its
# title keeps its own name before the colon.
_TITLE = re.compile(r"^([^\s:/\\]+):\s.*$")
# `worker-12`, `nginx_3`, `job-7.exe`: instance numbers, not different programs.
_NUMERIC_SUFFIX = re.compile(r"^(.*?[^\W\d_][\w.]*?)[-_#]\d+(\.exe)?$", re.IGNORECASE)
# `4.18.24090.11-0`, `16`, `app-4.33.90`: version folders that updates move programs between.
_VERSION_FOLDER = re.compile(r"^v?\d+(?:[._-]\d+)*(?:[-_.+][0-9a-z]+)?$", re.IGNORECASE)
_VERSIONED_FOLDER = re.compile(r"^(.*[A-Za-z][-_ ]v?)\d+(?:\.\d+)+(?:[-_.+][0-9a-z]+)?$", re.IGNORECASE)
_WINDOWS_HOME = re.compile(r"^([a-z]:\\users\\)([^\\]+)(\\|$)")
_POSIX_HOME = re.compile(r"^(/home/|/users/|/Users/)([^/]+)(/|$)")
# Shared profile folders are not a person's home: a program there is not "in a home".
_SHARED_PROFILES = {"public", "default", "default user", "all users", "shared"}


def guess_os(os_name: str | None, names: list[str] | None = None) -> str:
    """The agent's OS as one of windows/darwin/linux; guessed from `.exe` names when absent."""
    value = (os_name or "").strip().lower()
    if value.startswith("win"):
        return "windows"
    if value in {"darwin", "macos", "mac", "osx", "mac os x"}:
        return "darwin"
    if value:
        return "linux" if value in {"linux", "gnu/linux"} else value
    if names and any(n.lower().endswith(".exe") for n in names[:50] if isinstance(n, str)):
        return "windows"
    return "linux"


def normalize_name(name: str, os_name: str = "linux") -> str:
    """The key a process name is grouped by."""
    value = name.strip()
    if value.startswith("/"):
        value = value.rsplit("/", 1)[-1] or value
    match = _KERNEL_THREAD.match(value)
    if match:
        value = match.group(1)
    match = _TITLE.match(value)
    if match:
        value = match.group(1)
    match = _NUMERIC_SUFFIX.match(value)
    if match:
        value = match.group(1) + (match.group(2) or "")
    if os_name in CASE_INSENSITIVE_OS:
        value = value.lower()
    return value[:255]


def normalize_exe(path: str | None, os_name: str = "linux") -> str:
    """The key an executable path is grouped by: personal home folders and version folders folded."""
    if not path:
        return ""
    value = path.strip()
    if os_name == "windows":
        value = value.replace("/", "\\").lower()
        match = _WINDOWS_HOME.match(value)
        if match and match.group(2) not in _SHARED_PROFILES:
            value = match.group(1) + "<user>" + match.group(3) + value[match.end():]
    else:
        if os_name in CASE_INSENSITIVE_OS:
            value = value.lower()
        match = _POSIX_HOME.match(value)
        if match and match.group(2).lower() not in _SHARED_PROFILES:
            value = match.group(1) + "<user>" + match.group(3) + value[match.end():]
    sep = "\\" if os_name == "windows" else "/"
    parts = value.split(sep)
    # Only folders: the file name itself is the program and stays as it is.
    for i, part in enumerate(parts[:-1]):
        if _VERSION_FOLDER.match(part):
            parts[i] = "<v>"
        elif match := _VERSIONED_FOLDER.match(part):
            parts[i] = match.group(1) + "<v>"
    return sep.join(parts)[:2048]

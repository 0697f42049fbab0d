"""Normalization of process names and executable paths.

Pure functions (no Django): the model groups observations by these keys, so two
spellings of the same program must meet under one key, and two different
programs must never do so.
"""
from __future__ import annotations

import hashlib
import re
import shlex

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
# Per-run random folder names: the same program lands in a new one each run, install or mount,
# so each spelling would be a one-off path (a false positive, then a one-off approval).
_GUID = re.compile(r"\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?", re.IGNORECASE)
# MSIX / AppX package folders: Vendor.App_1.2.3.0_x64__8wekyb3d8bbwe (name, version, architecture, resource, publisher id).
_PACKAGE_FOLDER = re.compile(r"^([^_\\/]+)_\d+(?:\.\d+)+_(?:x64|x86|arm64|arm|neutral)_[^_]*_[0-9a-z]{13}$", re.IGNORECASE)
# Portable-app mount points and macOS per-user temporary folders: random by construction.
_MOUNT_FOLDER = re.compile(r"^(\.mount_|\.org\.chromium\.chromium\.)(.+)$", re.IGNORECASE)
_CHUNK = re.compile(r"[A-Za-z0-9]{5,}")
_WINDOWS_HOME = re.compile(r"^([a-z]:\\users\\)([^\\]+)(\\|$)")
_POSIX_HOME = re.compile(r"^(/home/|/users/|/Users/)([^/]+)(/|$)")
# Shared profile folders are not a person's home: a program there is not "in a home".
_SHARED_PROFILES = {"public", "default", "default user", "all users", "shared"}


def _random_chunk(chunk: str) -> bool:
    """A run of letters and digits that no person typed: mkdtemp, build ids, hashes, pids.

    Needs digits mixed in (``a1b2c3``, ``8f3a9c2d``) or a long digit run (``_MEI52962``); words
    with a number (``Office16``, ``python311``, ``x86``) have one letter/digit change and stay.
    """
    digits = sum(c.isdigit() for c in chunk)
    if digits == len(chunk):
        return len(chunk) >= 6
    trailing = len(chunk) - len(chunk.rstrip("0123456789"))
    if trailing >= 5:
        return True
    if digits < 2:
        return False
    changes = sum(a.isdigit() != b.isdigit() for a, b in zip(chunk, chunk[1:]))
    return changes >= 2


def _fold_folder(part: str) -> str:
    """One folder name with its per-run random parts replaced by <r>, <guid> or <pkg>."""
    if _GUID.search(part):
        part = _GUID.sub("<guid>", part)
    if match := _PACKAGE_FOLDER.match(part):
        return match.group(1) + "_<pkg>"
    if match := _MOUNT_FOLDER.match(part):
        return match.group(1) + "<r>"
    return _CHUNK.sub(lambda m: "<r>" if _random_chunk(m.group(0)) else m.group(0), part)


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
        elif i >= 2 and parts[i - 1] == "folders" and parts[i - 2] == "var" or \
                i >= 3 and parts[i - 2] == "folders" and parts[i - 3] == "var":
            parts[i] = "<r>"  # macOS /var/folders/xx/<random>/T/: a per-user temporary root
        else:
            parts[i] = _fold_folder(part)
    return sep.join(parts)[:2048]


# --- command lines ------------------------------------------------------------------------

# Programs that run what they are given: for these the script (or inline code) is what runs.
# A command line with the program alone: a habit too (``-bash``), so arguments turning up are news.
NO_ARGUMENTS = "<none>"
_INTERPRETER = re.compile(
    r"^(python[\d.]*w?|pypy[\d.]*|node|nodejs|deno|perl[\d.]*|ruby[\d.]*|php[\d.]*|lua[\d.]*|tclsh[\d.]*|"
    r"bash|sh|dash|zsh|ksh|mksh|csh|tcsh|fish|busybox|osascript|pwsh|powershell|powershell_ise|cmd|wscript|cscript|"
    r"mshta)(\.exe)?$", re.IGNORECASE)
# Options that carry the code itself (python -c, bash -c, node -e, powershell -Command / -EncodedCommand, cmd /c).
_INLINE = {"-c", "-e", "--eval", "-p", "--print", "-r", "-command", "-encodedcommand", "-enc", "-ec", "-en", "/c", "/k",
           "/r"}
# Options that take a value that is not the script (powershell -ExecutionPolicy Bypass -File x.ps1, python -W ignore).
_VALUED = {"-w", "-windowstyle", "-executionpolicy", "-ep", "-exec", "-version", "-inputformat", "-outputformat",
           "-configurationname", "--require"}
_SCRIPT_OPTIONS = {"-file", "-f", "-m"}  # the next value is the script (a file, or a python module)
_NUMBER = re.compile(r"\d+")
_B64 = re.compile(r"^[A-Za-z0-9+/]{24,}={0,2}$")
_HEX = re.compile(r"^(0x)?[0-9a-f]{8,}$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[<>&|;]+|/[\w./-]+")
MAX_TOKENS = 40


def is_interpreter(name: str) -> bool:
    """A shell or script interpreter: its command line, not its name, says what runs."""
    return bool(_INTERPRETER.match(name.strip()))


_PROGRAM = re.compile(r'^\s*("[^"]*"|.*?\.(?:exe|com|bat|cmd)(?=\s|$)|\S+)', re.IGNORECASE)


def _split(cmdline: str, os_name: str) -> list[str]:
    """The arguments after the program; an unquoted Windows path with blanks is still one program."""
    match = _PROGRAM.match(cmdline) if os_name == "windows" else None
    if match:
        cmdline = cmdline[match.end():]
    else:
        cmdline = cmdline.split(None, 1)[1] if len(cmdline.split(None, 1)) > 1 else ""
    if os_name == "windows":
        # Windows quoting: "..." groups, backslashes are path separators, not escapes.
        return [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', cmdline)]
    try:
        return shlex.split(cmdline)
    except ValueError:  # an unbalanced quote: split on blanks
        return cmdline.split()


def _token(arg: str, os_name: str) -> str:
    """One argument as a usual-or-not token: numbers, GUIDs, blobs and random path parts folded."""
    if os_name in CASE_INSENSITIVE_OS:
        arg = arg.lower()
    if arg.startswith("-") and "=" in arg:
        arg = arg.split("=", 1)[0] + "="  # --flag=value: the flag is the habit, the value varies
    elif ("/" in arg[1:] or "\\" in arg) and not arg.startswith("-"):
        sep = "\\" if os_name == "windows" else "/"
        return sep.join("<n>" if p.isdigit() else p for p in normalize_exe(arg, os_name).split(sep))[:200]
    elif _GUID.search(arg):
        arg = _GUID.sub("<guid>", arg)
    elif _B64.match(arg) and not arg.isalpha():
        return "<b64>"
    elif _HEX.match(arg):
        return "<hex>"
    return _NUMBER.sub("<n>", arg)[:120]


def command_parts(cmdline: str | None, name: str, os_name: str = "linux") -> tuple[str, str]:
    """(script, tokens) of a command line; both "" when there is none.

    script: for an interpreter, what it runs: the first argument that is not an option (a
    script file, normalized like a path), ``-m module``, or the inline code after ``-c`` /
    ``-e`` / ``-Command`` / ``/c`` (normalized, so the same one-liner is the same script);
    "" for other programs. tokens: the distinct normalized arguments after the program
    itself, sorted and space-separated, inline code split into its words: what the model
    learns as usual per program; NO_ARGUMENTS for the program alone.
    """
    if not cmdline:
        return "", ""
    args = _split(cmdline.strip(), os_name)
    if not args:
        return "", NO_ARGUMENTS
    script = ""
    if is_interpreter(name):
        i = 0
        while i < len(args):
            arg = args[i]
            flag = arg.lower()
            if flag in _INLINE:
                code = " ".join(args[i + 1:])
                blob = code.strip()
                if flag in ("-encodedcommand", "-enc", "-ec", "-en") or _B64.match(blob):
                    script = f"{flag} <b64:{hashlib.sha256(blob.encode()).hexdigest()[:12]}>"
                else:
                    script = f"{flag} " + " ".join(_token(w, os_name) for w in _WORD.findall(code))[:400]
                break
            if flag in _SCRIPT_OPTIONS and i + 1 < len(args):
                script = ("-m " if flag == "-m" else "") + _token(args[i + 1], os_name)
                break
            if flag in _VALUED:
                i += 2
                continue
            if not arg.startswith("-") and not (os_name == "windows" and arg.startswith("/")):
                script = _token(arg, os_name)
                break
            i += 1
    tokens: set[str] = set()
    for arg in args:
        if " " in arg.strip() or (is_interpreter(name) and len(arg) > 40 and not _B64.match(arg)):
            tokens.update(_token(w, os_name) for w in _WORD.findall(arg))  # inline code: its words
        else:
            tokens.add(_token(arg, os_name))
        if len(tokens) >= MAX_TOKENS:
            break
    tokens.discard("")
    return script[:512], " ".join(sorted(tokens))[:2048]


# --- lineage --------------------------------------------------------------------------------

EXITED = "<exited>"  # the parent of a shell or interpreter had exited, and no snapshot named it


def resolve_parents(pids: list, ppids: list, names: list[str],
                    remembered: dict[int, str] | None = None) -> tuple[list[str], list[bool]]:
    """Each process's parent program, and whether it was named from memory (it had exited).

    The snapshot first; then ``remembered`` (pid -> program in the host's recent snapshots);
    then, for a shell or interpreter, EXITED: an orphan whose parent nobody saw is a value the
    model learns like any parent (usual for a login shell on some hosts, news for most). For other
    programs an unknown parent stays "" (not reported: neutral). ppid 0 is the kernel: no parent.
    """
    by_pid: dict[int, str] = {}
    for pid, name in zip(pids, names):
        if pid is not None:
            by_pid.setdefault(pid, name)
    remembered = remembered or {}
    parents: list[str] = []
    gone: list[bool] = []
    for ppid, name in zip(ppids, names):
        if not ppid:
            parents.append("")
            gone.append(False)
        elif ppid in by_pid:
            parents.append(by_pid[ppid])
            gone.append(False)
        elif ppid in remembered:
            parents.append(remembered[ppid])
            gone.append(True)
        else:
            parents.append(EXITED if is_interpreter(name) else "")
            gone.append(False)
    return parents, gone

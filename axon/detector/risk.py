"""How risky it is to learn a flagged program as normal, in words a person can check.

Pure: no Django, no database. The preview and the alerts list call `assess` for every
candidate; anything it calls high risk is left unticked, so a hurried press never
whitelists it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

LOW, HIGH = "low", "high"

# Folders anyone can write to, or where downloads and droppers land.
_TEMP = (
    re.compile(r"^/(tmp|var/tmp|dev/shm)(/|$)"),
    re.compile(r"(^|\\)(windows\\)?temp\\"),
    re.compile(r"\\appdata\\local\\temp\\"),
    re.compile(r"%te?mp%"),
    re.compile(r"\\users\\public\\"),
    re.compile(r"(^|[\\/])downloads[\\/]"),
)

# Names of system programs and where the real ones live.
_WINDOWS_SYSTEM = {
    "svchost.exe", "lsass.exe", "csrss.exe", "smss.exe", "services.exe", "wininit.exe", "winlogon.exe",
    "explorer.exe", "rundll32.exe", "dllhost.exe", "conhost.exe", "taskhostw.exe", "spoolsv.exe",
    "runtimebroker.exe", "searchindexer.exe", "lsm.exe", "dwm.exe", "taskmgr.exe", "regsvr32.exe",
}
_WINDOWS_HOMES = ("c:\\windows\\",)
_UNIX_SYSTEM = {
    "systemd", "init", "sshd", "cron", "crond", "rsyslogd", "systemd-journald", "systemd-logind", "dbus-daemon",
    "sudo", "login", "agetty", "udevd", "systemd-udevd", "polkitd", "launchd", "kernel_task",
}
_UNIX_HOMES = (
    "/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/lib/", "/lib/", "/usr/libexec/", "/system/", "/usr/local/sbin/",
)
# Kernel threads have no program file: a file under one of these names is a disguise.
_KERNEL_THREADS = {"kworker", "kthreadd", "ksoftirqd", "kswapd0", "kdevtmpfs", "migration", "rcu_sched", "watchdog",
                   "kauditd", "khugepaged", "kblockd", "jbd2"}

_WEB_SERVERS = {"nginx", "apache2", "httpd", "w3wp.exe", "php-fpm", "gunicorn", "uwsgi", "lighttpd", "caddy", "tomcat",
                "node", "iisexpress.exe"}
_OFFICE = {"winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe", "msaccess.exe", "onenote.exe", "acrord32.exe",
           "acrobat.exe", "soffice.bin"}
_SCRIPT_HOSTS = {"wscript.exe", "cscript.exe", "mshta.exe"}

_SERVICE_ACCOUNTS = {"www-data", "nobody", "apache", "nginx", "httpd", "postgres", "mysql", "daemon", "redis",
                     "local service", "network service", "nt authority\\local service", "nt authority\\network service",
                     "iusr", "_www", "tomcat", "git", "jenkins"}
_INTERACTIVE = {"bash", "sh", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "python", "python3", "perl", "ruby", "php",
                "nc", "ncat", "netcat", "socat", "telnet", "curl", "wget", "ssh", "scp", "cmd.exe", "powershell.exe",
                "pwsh.exe", "pwsh", "whoami", "whoami.exe", "net.exe", "certutil.exe", "bitsadmin.exe"}

HIGH_CPU = 80.0  # percent of one core, on average: what miners and runaway loops do
SPREADING_HOSTS = 3  # new software on this many hosts or more is being rolled out


@dataclass
class Candidate:
    """A flagged program (one approval key: host, name, path, parent), as `assess`, the preview and the alerts list see it."""

    name: str
    exe: str = ""
    parent: str = ""
    user: str = ""
    hosts: int = 1
    cpu: float | None = None  # average percent of one core
    reasons: tuple[str, ...] | list[str] = ()  # what the model said when it flagged it
    # The rest says which it is and what was seen and decided; `assess` reads none of it.
    key: str = ""
    hostname: str = ""
    name_norm: str = ""
    exe_norm: str = ""
    script: str = ""  # what an interpreter ran: part of what approving it approves
    observations: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    max_score: float | None = None
    risk: str = LOW
    risk_reasons: list[str] = field(default_factory=list)
    status: str = "open"  # the triage (axon.models.Alert.Status)
    note: str = ""
    updated_by: str = ""
    updated_at: datetime | None = None
    newest_id: int = 0  # the newest flagged record's id: what arrived last
    reopened: bool = False  # closed, then flagged again
    held: list[str] = field(default_factory=list)  # why a low-risk item is still not ticked by default
    severity: str = ""  # how urgently it needs a person (axon.detector.severity), set by the alerts list
    severity_reasons: list[str] = field(default_factory=list)
    severity_rank: tuple = ()  # sorts worst first

    @property
    def default(self) -> bool:
        """Ticked by default unless a person must decide: high risk, or held (being looked into, arrived late)."""
        return self.risk != HIGH and not self.held

    @property
    def approval(self) -> dict:
        return {"key": self.key, "hostname": self.hostname, "name": self.name_norm, "exe": self.exe_norm,
                "parent": self.parent, "script": self.script}


@dataclass(frozen=True)
class Fleet:
    """What the other candidates look like: whether new software is spreading while this one is not."""

    spreading: tuple[str, ...] = ()  # names of new programs seen on SPREADING_HOSTS or more hosts


def assess(candidate: Candidate, fleet: Fleet = Fleet()) -> tuple[str, list[str]]:
    """(risk, reasons): "high" with every reason found, or "low" with none."""
    name = _base(candidate.name)
    exe = (candidate.exe or "").strip().lower()
    parent = _base(candidate.parent)
    user = (candidate.user or "").strip().lower()
    reasons: list[str] = []

    if exe and any(p.search(exe) for p in _TEMP):
        reasons.append(f"runs from a temporary or world-writable folder ({candidate.exe})")
    elif exe and _hidden_folder(exe):
        reasons.append(f"runs from a hidden folder ({candidate.exe})")

    system_reason = _system_name(name, exe, candidate)
    if system_reason:
        reasons.append(system_reason)

    if kind := risky_parent(parent, name):
        reasons.append(f"started by {candidate.parent}, {kind}, which should not start programs")

    service_account = user in _SERVICE_ACCOUNTS or user.endswith("$")
    if service_account and (name in _INTERACTIVE or name.removesuffix(".exe") in _INTERACTIVE):
        reasons.append(f"the service account {candidate.user} runs an interactive shell or tool ({candidate.name})")

    resource = [r for r in candidate.reasons if r.startswith(("CPU ", "memory ")) and " vs usual " in r]
    if resource:
        reasons.append(f"resource use far above the program's norm ({'; '.join(resource)})")
    elif candidate.cpu is not None and candidate.cpu >= HIGH_CPU:
        reasons.append(f"uses {candidate.cpu:.0f}% CPU on average, far above ordinary programs")

    if candidate.hosts == 1 and fleet.spreading and name not in {_base(n) for n in fleet.spreading}:
        shown = ", ".join(sorted(fleet.spreading)[:3])
        reasons.append(f"first seen on one host only, while other new software ({shown}) spreads across the fleet")

    return (HIGH if reasons else LOW), reasons


def risky_parent(parent: str, name: str = "") -> str:
    """What kind of parent should not start programs ("a web server", ...), or "" for an ordinary one."""
    parent, name = _base(parent), _base(name)
    if not parent or parent == name:
        return ""
    return ("a web server" if parent in _WEB_SERVERS else "an office program" if parent in _OFFICE
            else "a script host" if parent in _SCRIPT_HOSTS else "")


def in_temp_folder(exe: str) -> bool:
    """Under a temporary, world-writable or hidden folder: where droppers land."""
    exe = (exe or "").strip().lower()
    return bool(exe) and (any(p.search(exe) for p in _TEMP) or _hidden_folder(exe))


def _base(name: str) -> str:
    """A program's bare name, lower-cased: 'C:\\Windows\\x.EXE' → 'x.exe', 'kworker/0:2' → 'kworker'."""
    name = (name or "").strip().lower().split("\\")[-1]
    # A path's last part; otherwise what comes before a slash, as in a kernel thread's "kworker/0:2-events".
    return name.rsplit("/", 1)[-1] if name.startswith("/") else name.split("/")[0]


def _hidden_folder(exe: str) -> bool:
    parts = re.split(r"[\\/]", exe)[:-1]
    return any(p.startswith(".") and p not in (".", "..") for p in parts)


def _system_name(name: str, exe: str, c: Candidate) -> str:
    if name in _KERNEL_THREADS and exe:
        return f"a kernel thread's name ({c.name}) on a program file ({c.exe}); kernel threads have none"
    if name in _WINDOWS_SYSTEM and exe and not exe.startswith(_WINDOWS_HOMES):
        return f"a system program's name ({c.name}) from an unusual folder ({c.exe})"
    if name in _UNIX_SYSTEM and exe.startswith("/") and not exe.startswith(_UNIX_HOMES):
        return f"a system program's name ({c.name}) from an unusual folder ({c.exe})"
    known = _WINDOWS_SYSTEM | _UNIX_SYSTEM | _KERNEL_THREADS
    if name in known:
        return ""
    for real in sorted(known):
        if len(real) >= 5 and len(real) >= 5 and _close(_unmask(name), real):
            return f"a name that imitates the system program {real} ({c.name})"
    return ""


def _unmask(name: str) -> str:
    """Undo the usual look-alike swaps (svch0st, 1sass, scvhost stays as it is and is caught by distance)."""
    return name.replace("0", "o").replace("1", "l").replace("rn", "m").replace("vv", "w")


def _close(a: str, b: str) -> bool:
    """Within one edit (insert, delete, substitute, or swap of neighbours) of each other."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))

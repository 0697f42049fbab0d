import pytest

from telemetry.normalize import EXITED, command_parts, guess_os, normalize_exe, normalize_name, resolve_parents


@pytest.mark.parametrize("raw, os_name, expected", [
    ("kworker/0:1-events", "linux", "kworker"),
    ("kworker/u8:1-events_unbound", "linux", "kworker"),
    ("kworker/R-rcu_gp", "linux", "kworker"),
    ("ksoftirqd/3", "linux", "ksoftirqd"),
    ("migration/0", "linux", "migration"),
    ("postgres: checkpointer", "linux", "postgres"),
    ("postgres: logical replication launcher", "linux", "postgres"),
    ("sshd: deploy@pts/0", "linux", "sshd"),
    ("worker-12", "linux", "worker"),
    ("job_3", "linux", "job"),
    ("Job-7.EXE", "windows", "job.exe"),
    ("Obsidian.exe", "windows", "obsidian.exe"),
    ("Google Chrome Helper (Renderer)", "darwin", "google chrome helper (renderer)"),
    ("Firefox", "linux", "Firefox"),
    ("python3", "linux", "python3"),
    ("x264", "linux", "x264"),
    ("/usr/bin/bash", "linux", "bash"),
])
def test_names_fold_to_one_key_per_program(raw, os_name, expected):
    assert normalize_name(raw, os_name) == expected


def test_different_programs_keep_different_keys():
    names = ["python3", "python2", "svchost.exe", "scvhost.exe", "kworker", "kthreadd"]
    assert len({normalize_name(n, "linux") for n in names}) == len(names)


@pytest.mark.parametrize("raw, os_name, expected", [
    ("C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe", "windows",
     "c:\\programdata\\microsoft\\windows defender\\platform\\<v>\\msmpeng.exe"),
    ("C:\\Users\\erin\\AppData\\Local\\Programs\\App\\App.exe", "windows",
     "c:\\users\\<user>\\appdata\\local\\programs\\app\\app.exe"),
    ("C:/Users/Bob/AppData/x.exe", "windows", "c:\\users\\<user>\\appdata\\x.exe"),
    ("C:\\Users\\Public\\Libraries\\svchost.exe", "windows", "c:\\users\\public\\libraries\\svchost.exe"),
    ("C:\\Windows\\System32\\svchost.exe", "windows", "c:\\windows\\system32\\svchost.exe"),
    ("/usr/lib/postgresql/16/bin/postgres", "linux", "/usr/lib/postgresql/<v>/bin/postgres"),
    ("/home/dev/.local/bin/tool", "linux", "/home/<user>/.local/bin/tool"),
    ("/Users/lee/Applications/X.app/Contents/MacOS/X", "darwin", "/users/<user>/applications/x.app/contents/macos/x"),
    ("/opt/slack/app-4.33.90/slack", "linux", "/opt/slack/app-<v>/slack"),
    ("/tmp/.X11-unix/.k/kworker", "linux", "/tmp/.X11-unix/.k/kworker"),
    ("/usr/bin/x86_64-linux-gnu-gcc-12", "linux", "/usr/bin/x86_64-linux-gnu-gcc-12"),
    ("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "windows",
     "c:\\program files\\microsoft office\\root\\office16\\winword.exe"),
    ("/opt/Qt5Core/python311/x86_64/tool", "linux", "/opt/Qt5Core/python311/x86_64/tool"),
    # Per-run random parts: GUID folders, package folders, build and temporary folders, mount points.
    ("C:\\Users\\bob\\AppData\\Local\\Temp\\{6A1B2C3D-1111-2222-3333-444455556666}\\setup.exe", "windows",
     "c:\\users\\<user>\\appdata\\local\\temp\\<guid>\\setup.exe"),
    ("C:\\Program Files\\WindowsApps\\Microsoft.WindowsTerminal_1.18.3181.0_x64__8wekyb3d8bbwe\\wt.exe", "windows",
     "c:\\program files\\windowsapps\\microsoft.windowsterminal_<pkg>\\wt.exe"),
    ("C:\\Users\\bob\\AppData\\Local\\Temp\\is-A1B2C.tmp\\setup.tmp", "windows",
     "c:\\users\\<user>\\appdata\\local\\temp\\is-<r>.tmp\\setup.tmp"),
    ("/tmp/go-build123456789/b001/exe/main", "linux", "/tmp/go-<r>/b001/exe/main"),
    ("/tmp/_MEI52962/app", "linux", "/tmp/_<r>/app"),
    ("/tmp/.mount_ObsidiAbC/obsidian", "linux", "/tmp/.mount_<r>/obsidian"),
    ("/private/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/AppTranslocation/6A1B2C3D-1111-2222-3333-444455556666/d/"
     "X.app/Contents/MacOS/X", "darwin", "/private/var/folders/<r>/<r>/t/apptranslocation/<guid>/d/x.app/contents/macos/x"),
    ("", "linux", ""),
    (None, "linux", ""),
])
def test_paths_fold_homes_and_version_folders_only(raw, os_name, expected):
    assert normalize_exe(raw, os_name) == expected


@pytest.mark.parametrize("os_name, names, expected", [
    ("Windows", [], "windows"), ("win32", [], "windows"), ("macOS", [], "darwin"), ("linux", [], "linux"),
    (None, ["a.exe", "b"], "windows"), ("", ["bash"], "linux"),
])
def test_os_is_read_or_guessed(os_name, names, expected):
    assert guess_os(os_name, names) == expected


@pytest.mark.parametrize("os_name", ["linux", "windows", "darwin"])
def test_normalizing_a_normalized_path_changes_nothing(os_name):
    """A retrain folds stored exe_norm values again (rows stored before a folding rule met the new ones)."""
    for raw in ["C:\\Users\\bob\\AppData\\Local\\Temp\\{6A1B2C3D-1111-2222-3333-444455556666}\\s.exe",
                "/home/dev/.local/bin/tool", "/opt/slack/app-4.33.90/slack", "/tmp/go-build123456789/b001/exe/main",
                "C:\\Program Files\\WindowsApps\\A.B_1.2.3.0_x64__8wekyb3d8bbwe\\a.exe"]:
        once = normalize_exe(raw, os_name)
        assert normalize_exe(once, os_name) == once


@pytest.mark.parametrize("cmdline, name, os_name, script, tokens", [
    ("/usr/bin/python3 /opt/app/manage.py runserver 0.0.0.0:8000", "python3", "linux",
     "/opt/app/manage.py", {"/opt/app/manage.py", "runserver", "<n>.<n>.<n>.<n>:<n>"}),
    ("python3 -m http.server 8000", "python3", "linux", "-m http.server", {"-m", "http.server", "<n>"}),
    ("powershell.exe -NoP -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA", "powershell.exe", "windows",
     None, {"-nop", "-w", "hidden", "-enc", "<b64>"}),
    ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -ExecutionPolicy Bypass -File C:\\Ops\\backup.ps1",
     "powershell.exe", "windows", "c:\\ops\\backup.ps1", {"-executionpolicy", "bypass", "-file", "c:\\ops\\backup.ps1"}),
    ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe --type=renderer --lang=en-US", "chrome.exe", "windows",
     "", {"--type=", "--lang="}),
    ("-bash", "bash", "linux", "", {"<none>"}),
    ("", "bash", "linux", "", set()),
])
def test_command_lines_reduce_to_a_script_and_usual_or_not_tokens(cmdline, name, os_name, script, tokens):
    got_script, got_tokens = command_parts(cmdline, name, os_name)
    if script is not None:
        assert got_script == script
    assert set(filter(None, got_tokens.split(" "))) == tokens


def test_a_one_liner_is_its_own_script_and_its_words_are_tokens():
    script, tokens = command_parts("python3 -c \"import socket;s=socket.socket()\"", "python3", "linux")
    assert script.startswith("-c ") and "socket" in script
    assert {"-c", "import", "socket"} <= set(tokens.split(" "))
    # Other programs have no script: only interpreters run what they are given.
    assert command_parts("/usr/sbin/nginx -g 'daemon off;'", "nginx", "linux")[0] == ""


def test_parents_come_from_the_snapshot_then_from_memory_and_orphaned_shells_say_so():
    pids, ppids = [10, 11, 12, 13, 14], [0, 10, 99, 77, 88]
    names = ["init", "sshd", "bash", "tool", "python3"]
    parents, gone = resolve_parents(pids, ppids, names, remembered={99: "winword.exe"})
    assert parents == ["", "init", "winword.exe", "", EXITED]
    assert gone == [False, False, True, False, False]
    assert resolve_parents([None], [None], ["a"]) == ([""], [False])

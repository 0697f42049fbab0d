"""axon.detector.risk: which flagged programs a press must not learn without a person's deliberate tick, and why, in words."""
import pytest

from axon.detector.risk import Candidate, Fleet, assess


def risk(**kwargs):
    return assess(Candidate(**kwargs))


@pytest.mark.parametrize("exe", [
    "/tmp/kdevtmpfsi", "/var/tmp/x", "/dev/shm/.x/run", "C:\\Windows\\Temp\\a.exe",
    "C:\\Users\\bob\\AppData\\Local\\Temp\\setup.exe", "%TEMP%\\a.exe", "C:\\Users\\Public\\mimikatz.exe",
    "C:\\Users\\bob\\Downloads\\tool.exe", "/home/bob/Downloads/tool",
])
def test_temporary_and_world_writable_folders_are_high_risk(exe):
    level, reasons = risk(name="tool", exe=exe)
    assert level == "high"
    assert any("temporary or world-writable folder" in r and exe in r for r in reasons), reasons


def test_a_hidden_folder_is_high_risk():
    level, reasons = risk(name="xmrig", exe="/opt/app/.cache/xmrig")
    assert level == "high" and reasons == ["runs from a hidden folder (/opt/app/.cache/xmrig)"]


def test_a_new_desktop_app_in_the_users_programs_folder_is_low_risk():
    assert risk(name="Obsidian.exe", exe="C:\\Users\\erin\\AppData\\Local\\Programs\\Obsidian\\Obsidian.exe",
                parent="explorer.exe", user="erin", cpu=3.0) == ("low", [])
    assert risk(name="Figma.exe", exe="C:\\Users\\ana\\AppData\\Local\\Figma\\Figma.exe", parent="explorer.exe",
                user="ana") == ("low", [])


def test_a_system_programs_name_from_elsewhere_is_high_risk_and_from_its_home_is_not():
    level, reasons = risk(name="svchost.exe", exe="C:\\ProgramData\\svchost.exe", parent="services.exe", user="SYSTEM")
    assert level == "high" and "a system program's name (svchost.exe) from an unusual folder" in reasons[0]
    assert risk(name="svchost.exe", exe="C:\\Windows\\System32\\svchost.exe", parent="services.exe") == ("low", [])
    assert risk(name="sshd", exe="/usr/sbin/sshd", parent="systemd") == ("low", [])
    assert risk(name="sshd", exe="/opt/sshd", parent="systemd")[0] == "high"


@pytest.mark.parametrize("name, real", [("svch0st.exe", "svchost.exe"), ("scvhost.exe", "svchost.exe"),
                                        ("lsasss.exe", "lsass.exe"), ("kdevtmpfsi", "kdevtmpfs")])
def test_a_name_imitating_a_system_program_is_high_risk(name, real):
    level, reasons = risk(name=name, exe="/opt/x/" + name)
    assert level == "high"
    assert f"imitates the system program {real}" in " ".join(reasons), reasons


def test_a_kernel_threads_name_on_a_file_is_high_risk_and_a_real_kernel_thread_is_not():
    level, reasons = risk(name="kworker/0:2", exe="/usr/local/bin/kworker")
    assert level == "high" and "kernel thread" in reasons[0]
    assert risk(name="kworker/0:2", exe="") == ("low", [])


@pytest.mark.parametrize("parent, kind", [("nginx", "a web server"), ("w3wp.exe", "a web server"),
                                          ("WINWORD.EXE", "an office program"), ("wscript.exe", "a script host")])
def test_a_parent_that_should_not_start_programs_is_high_risk(parent, kind):
    level, reasons = risk(name="helper", exe="/usr/local/bin/helper", parent=parent)
    assert level == "high" and reasons == [f"started by {parent}, {kind}, which should not start programs"]


def test_a_web_servers_own_workers_are_not_a_reason():
    assert risk(name="nginx", exe="/usr/sbin/nginx", parent="nginx", user="www-data") == ("low", [])


def test_a_service_account_running_a_shell_is_high_risk_and_a_person_running_one_is_not():
    level, reasons = risk(name="bash", exe="/usr/bin/bash", parent="postgres", user="postgres")
    assert level == "high"
    assert reasons == ["the service account postgres runs an interactive shell or tool (bash)"]
    assert risk(name="bash", exe="/usr/bin/bash", parent="sshd", user="erin") == ("low", [])
    assert risk(name="powershell.exe", exe="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                user="NETWORK SERVICE")[0] == "high"


def test_resource_use_far_above_the_norm_is_high_risk():
    level, reasons = risk(name="java", exe="/usr/bin/java", reasons=("CPU 95% vs usual 3.0%",))
    assert level == "high" and reasons == ["resource use far above the program's norm (CPU 95% vs usual 3.0%)"]
    level, reasons = risk(name="xmrig", exe="/opt/x/xmrig", cpu=95.0)
    assert level == "high" and "95% CPU" in reasons[0]
    assert risk(name="app", exe="/opt/app/app", cpu=20.0) == ("low", [])


def test_one_host_only_while_other_new_software_spreads_is_high_risk():
    fleet = Fleet(spreading=("Teams.exe",))
    level, reasons = assess(Candidate(name="tool.exe", exe="C:\\Program Files\\Tool\\tool.exe", hosts=1), fleet)
    assert level == "high" and "while other new software (Teams.exe) spreads" in reasons[0]
    assert assess(Candidate(name="Teams.exe", exe="C:\\Program Files\\Teams\\Teams.exe", hosts=5), fleet) == ("low", [])
    assert assess(Candidate(name="tool.exe", exe="C:\\Program Files\\Tool\\tool.exe", hosts=1), Fleet()) == ("low", [])


def test_the_demo_intruder_has_every_reason_in_words():
    level, reasons = risk(name="kdevtmpfsi", exe="/tmp/kdevtmpfsi", parent="nginx", user="www-data")
    assert level == "high"
    assert reasons == [
        "runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)",
        "a name that imitates the system program kdevtmpfs (kdevtmpfsi)",
        "started by nginx, a web server, which should not start programs",
    ]

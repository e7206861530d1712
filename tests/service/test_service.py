"""`dictated service`: unit files checked by the managers' own tools, and a real systemd user manager.

- The plist is parsed by plistlib (and `plutil -lint` on macOS); the systemd unit must pass
  `systemd-analyze verify --user` without a single warning (a misspelt key is only a warning there,
  so the test also shows that a broken unit does produce one).
- install/status/restart/re-install/uninstall run against a real `systemd --user` (tests/service/systemd_user.py)
  that starts the real daemon on a real PortAudio microphone (an ALSA pipe device, tests/alsa.py).
  It runs in the unit's full sandbox, which the test checks from /proc (test_sandbox.py: the
  rendered sandbox itself).
- The launchd round trip needs macOS and runs in .github/workflows/macos.yml.
"""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dictated.config import TransportOptions
from dictated.service.spec import service_spec
from dictated.service.systemd import SystemdUserManager
from dictated.shutdown import (
    DRAIN_TIMEOUT_S,
    SERVICE_STOP_TIMEOUT_S,
    STOP_CAPTURE_TIMEOUT_S,
    service_stop_timeout_s,
)
from tests import alsa
from tests.conftest import DEMO_WAV, REPO
from tests.service import systemd_user
from tests.service.units import (
    VENV_BIN,
    assert_sandboxed,
    dictated,
    outside_tmp,
    verify,
)
from tests.speech import SENTENCES, silence, synthesize

DARWIN = sys.platform == "darwin"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- rendering -----------------------------------------------------------------------------------


def test_the_drain_bound_fits_in_the_managers_stop_timeout():
    from dictated import capture, server

    assert server.SHUTDOWN_TIMEOUT_S == DRAIN_TIMEOUT_S  # the daemon uses the shared bounds
    assert capture.STOP_CAPTURE_TIMEOUT_S == STOP_CAPTURE_TIMEOUT_S
    # capture stop + drain + the default linger must end before the manager sends SIGKILL
    linger = TransportOptions().linger_s
    assert STOP_CAPTURE_TIMEOUT_S + DRAIN_TIMEOUT_S + linger < SERVICE_STOP_TIMEOUT_S == 75
    assert SERVICE_STOP_TIMEOUT_S > 20  # launchd's default ExitTimeOut would be too short


def test_launchd_plist_has_the_keys(home_env, tmp_path):
    config = tmp_path / "my config.toml"
    config.write_text("[engine]\nname = 'whisper'\n")
    proc = dictated(home_env, "service", "print", "--manager", "launchd", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    plist = plistlib.loads(proc.stdout.encode())
    home = Path(home_env["HOME"])
    assert plist["Label"] == "org.dictated.daemon"
    assert plist["ProgramArguments"] == [
        sys.executable,
        "-m",
        "dictated",
        "run",
        "--config",
        str(config.resolve()),
    ]
    assert os.path.isabs(plist["ProgramArguments"][0]) and os.access(sys.executable, os.X_OK)
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart after a crash, not a stop
    assert isinstance(plist["ThrottleInterval"], int) and plist["ThrottleInterval"] >= 5
    assert plist["ProcessType"] == "Interactive"
    assert plist["Umask"] == 0o077  # an integer: launchd reads no octal string
    assert plist["ExitTimeOut"] == SERVICE_STOP_TIMEOUT_S
    logs = home / "Library" / "Logs" / "dictated"
    assert plist["StandardOutPath"] == str(logs / "dictated.out.log")
    assert plist["StandardErrorPath"] == str(logs / "dictated.err.log")
    assert plist["WorkingDirectory"] == str(home)
    environment = plist["EnvironmentVariables"]
    assert environment["PATH"].split(":")[0] == VENV_BIN
    assert environment["DICTATED_RUNTIME_DIR"] == home_env["DICTATED_RUNTIME_DIR"]
    # the template in launchd/ is a plist itself, and rendering keeps its fixed keys
    template = plistlib.loads((REPO / "launchd" / "org.dictated.daemon.plist").read_bytes())
    for key in ("Label", "RunAtLoad", "KeepAlive", "ThrottleInterval", "ProcessType", "Umask"):
        assert plist[key] == template[key], key
    if DARWIN:  # Apple's own checker
        path = tmp_path / "rendered.plist"
        path.write_text(proc.stdout)
        lint = subprocess.run(["plutil", "-lint", str(path)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (apt install systemd)"
)
def test_systemd_unit_passes_systemd_analyzeverify(home_env, tmp_path):
    proc = dictated(home_env, "service", "print", "--manager", "systemd")
    assert proc.returncode == 0, proc.stderr
    check = verify(tmp_path, proc.stdout, home_env)
    assert check.returncode == 0 and check.stderr == "", check.stderr

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(proc.stdout)
    service = unit["Service"]
    assert service["ExecStart"].split() == [sys.executable, "-m", "dictated", "run"]
    assert service["Restart"] == "on-failure"
    assert service["TimeoutStopSec"] == str(SERVICE_STOP_TIMEOUT_S)
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2"  # a config error does not restart-loop
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # reload = SIGHUP = config re-read
    assert f'"PATH={VENV_BIN}:' in service["Environment"]
    assert unit["Install"]["WantedBy"] == "default.target"

    # the check has teeth: a misspelt key and a missing interpreter are reported
    broken = proc.stdout.replace("Restart=on-failure", "Restart=on-failur").replace(
        sys.executable, "/nonexistent/bin/python"
    )
    check = verify(tmp_path, broken, home_env)
    assert "on-failur" in check.stderr and "/nonexistent/bin/python" in check.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (apt install systemd)"
)
def test_systemd_unit_quotes_an_interpreter_path_with_spaces_percent_and_dollar(home_env, tmp_path):
    odd = tmp_path / "my env 100% $HOME"
    odd.mkdir()
    (odd / "python").symlink_to(sys.executable)
    spec = service_spec(interpreter=str(odd / "python"))
    manager = SystemdUserManager()
    text = manager.render(spec)
    check = verify(tmp_path, text, home_env)  # it checks that ExecStart's binary exists
    assert check.returncode == 0 and check.stderr == "", check.stderr
    unit_path = Path(home_env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "dictated.service"
    unit_path.parent.mkdir(parents=True)
    unit_path.write_text(text)
    assert manager.installed_program() == (str(odd / "python"), "-m", "dictated", "run")


def test_a_longer_linger_lengthens_the_stop_timeout(home_env, tmp_path):
    config = tmp_path / "linger.toml"
    config.write_text("[transport]\nlinger_s = 30\n")
    proc = dictated(home_env, "service", "print", "--manager", "systemd", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert f"TimeoutStopSec={SERVICE_STOP_TIMEOUT_S + 29}" in proc.stdout.splitlines()
    proc = dictated(home_env, "service", "print", "--manager", "launchd", "--config", str(config))
    assert plistlib.loads(proc.stdout.encode())["ExitTimeOut"] == SERVICE_STOP_TIMEOUT_S + 29


def test_print_touches_nothing(home_env, tmp_path):
    before = _tree(tmp_path)
    runtime_before = _tree(Path(home_env["DICTATED_RUNTIME_DIR"]))
    for manager in ("launchd", "systemd"):
        proc = dictated(home_env, "service", "print", "--manager", manager)
        assert proc.returncode == 0 and proc.stdout, proc.stderr
    assert _tree(tmp_path) == before
    assert _tree(Path(home_env["DICTATED_RUNTIME_DIR"])) == runtime_before


# ---- no manager here ---------------------------------------------------------------------------


@pytest.mark.skipif(DARWIN, reason="launchd exists on macOS")
def test_install_with_launchd_on_linux_exits_2_and_writes_nothing(home_env, tmp_path):
    before = _tree(tmp_path)
    proc = dictated(home_env, "service", "install", "--manager", "launchd")
    assert proc.returncode == 2, proc
    assert "launchd is macOS's service manager and is not available on this machine" in proc.stderr
    assert "--manager systemd" in proc.stderr and "Traceback" not in proc.stderr
    assert _tree(tmp_path) == before


@pytest.mark.skipif(DARWIN, reason="Linux: systemd")
def test_systemd_install_without_a_user_manager_exits_2_and_writes_nothing(home_env, tmp_path):
    """No user bus (a container, an ssh session without lingering): systemctl's own answer is shown."""
    empty_runtime = tmp_path / "no-manager"
    empty_runtime.mkdir(mode=0o700)
    env = {**home_env, "XDG_RUNTIME_DIR": str(empty_runtime)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    before = _tree(tmp_path)
    proc = dictated(env, "service", "install", "--manager", "systemd")
    assert proc.returncode == 2, proc
    assert "systemd's user manager is not reachable (systemctl --user: " in proc.stderr
    assert "loginctl enable-linger" in proc.stderr
    status = dictated(env, "service", "status")
    assert status.returncode == 2 and "not reachable" in status.stderr
    # and with no systemd at all
    no_systemctl = {**env, "PATH": VENV_BIN}
    proc = dictated(no_systemctl, "service", "install")
    assert proc.returncode == 2
    assert "systemd is not available on this machine (no systemctl on PATH)" in proc.stderr
    assert _tree(tmp_path) == before


def test_a_bad_config_is_refused_before_anything_is_installed(home_env, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[engine]\nnmae = 'whisper'\n")
    proc = dictated(home_env, "service", "install", "--config", str(config))
    assert proc.returncode == 2 and "engine.nmae" in proc.stderr


def test_launchd_logs_tail_the_log_files(home_env):
    logs = Path(home_env["HOME"]) / "Library" / "Logs" / "dictated"
    missing = dictated(home_env, "service", "logs", "--manager", "launchd", "--no-follow")
    assert missing.returncode == 1 and "no service log yet" in missing.stdout
    logs.mkdir(parents=True)
    (logs / "dictated.err.log").write_text("".join(f"line {i}\n" for i in range(10)))
    proc = dictated(home_env, "service", "logs", "--manager", "launchd", "--no-follow", "-n", "2")
    assert proc.returncode == 0 and proc.stdout == "line 8\nline 9\n", proc


# ---- a real systemd user manager ---------------------------------------------------------------


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _transcripts(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [e["event"] for e in events if e["topic"] == "transcript"]


def _daemon_status(env) -> dict | None:
    proc = dictated(env, "status", "--json", timeout=30)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


@pytest.mark.skipif(
    alsa.portaudio_missing_reason() is not None, reason=str(alsa.portaudio_missing_reason())
)
@pytest.mark.skipif(
    systemd_user.unavailable_reason() is not None, reason=str(systemd_user.unavailable_reason())
)
def test_systemd_service_install_status_reinstall_restart_and_stop_without_losing_speech(
    home_env, tmp_path, monkeypatch
):
    # a home outside /tmp, as a real one is, so the unit gets its full sandbox (PrivateTmp=yes,
    # ProtectHome=read-only) and the default socket directory, $XDG_RUNTIME_DIR/dictated
    base = outside_tmp(tmp_path)
    home_env = {
        **home_env,
        "HOME": str(base / "home"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CACHE_HOME": str(base / "cache"),
    }
    del home_env["DICTATED_RUNTIME_DIR"]
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(key, home_env[key])  # for the in-process checks below
    monkeypatch.delenv("DICTATED_RUNTIME_DIR")
    (base / "home").mkdir()
    fifo = base / "mic.fifo"
    os.mkfifo(fifo)
    asound = alsa.write_config(
        base / "asound.conf", [alsa.fifo_capture("testmic", fifo)], default="testmic"
    )
    config_dir = Path(home_env["XDG_CONFIG_HOME"]) / "dictated"
    config_dir.mkdir(parents=True)
    settings = (
        "[audio]\ndevice = 'testmic'\n[engine]\nname = 'whisper'\n[transport]\nlinger_s = 0\n"
    )
    (config_dir / "config.toml").write_text(settings)
    journal = Path(home_env["XDG_DATA_HOME"]) / "dictated" / "journal.jsonl"
    unit_path = Path(home_env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "dictated.service"
    env = {**home_env, "ALSA_CONFIG_PATH": str(asound)}

    mic = alsa.FifoMicrophone(fifo)
    try:
        with systemd_user.UserManager(env, runtime_parent=base) as manager:
            env = manager.env
            # install: written, enabled, started, and the daemon answers on its control socket
            proc = dictated(env, "service", "install")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"installed {unit_path} (systemd)" in proc.stdout
            props = manager.show(
                "dictated.service", "ActiveState", "UnitFileState", "MainPID", "TimeoutStopUSec"
            )
            assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled"
            stop_s = service_stop_timeout_s(0.0)  # this config lingers 0 s
            # the unit's stop timeout, as systemd reads it
            assert props["TimeoutStopUSec"] == f"{stop_s // 60}min {stop_s % 60}s"
            first_pid = int(props["MainPID"])

            proc = dictated(env, "service", "status")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"active (running), pid {first_pid}" in proc.stdout
            status = _wait(lambda: _daemon_status(env), 90, "the service's daemon to answer")
            status = _wait(
                lambda: (s := _daemon_status(env)) and s["state"] == "ready" and s, 90, "ready"
            )
            assert status["pid"] == first_pid and status["source"] == "mic:testmic"
            human = dictated(env, "status")
            assert human.returncode == 0 and "ready" in human.stdout.splitlines()[0]
            assert f"pid {first_pid}" in human.stdout and "mic:testmic" in human.stdout
            # the doctor agrees (its own microphone check reads the same pipe: not asserted)
            report = json.loads(dictated(env, "doctor", "--json").stdout)
            checks = {c["name"]: c for c in report["checks"]}
            assert checks["service"]["status"] == "ok", checks["service"]
            assert checks["service"]["details"]["pid"] == first_pid
            assert checks["daemon"]["status"] == "ok"
            assert checks["daemon"]["details"]["pid"] == first_pid
            assert "service unit" not in checks  # the unit is what this environment renders
            assert_sandboxed(first_pid, unit_path, journal, base)

            # it hears speech through the microphone and journals the transcript
            mic.say(np.concatenate([synthesize(SENTENCES[0]), silence(1.5)]))
            texts = _wait(
                lambda: [t["text"].lower() for t in _transcripts(journal)], 60, "a transcript"
            )
            assert "train" in texts[0]

            # re-install from another config: the unit is replaced in place, the daemon restarted
            # (a path systemd would mangle unquoted: the daemon would not start with it)
            other = base / "other 100% $HOME.toml"
            other.write_text(settings)
            proc = dictated(env, "service", "install", "--config", str(other))
            assert proc.returncode == 0 and "updated" in proc.stdout, proc.stdout + proc.stderr
            program = SystemdUserManager().installed_program()
            assert program == (sys.executable, "-m", "dictated", "run", "--config", str(other))
            assert sorted(p.name for p in unit_path.parent.iterdir()) == [
                "default.target.wants",
                "dictated.service",
            ]
            second_pid = int(manager.show("dictated.service", "MainPID")["MainPID"])
            assert second_pid not in (0, first_pid)
            # what systemd really executed, argument by argument
            argv = Path(f"/proc/{second_pid}/cmdline").read_bytes().split(b"\0")[:-1]
            assert [a.decode() for a in argv] == list(program)

            proc = dictated(env, "service", "restart")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            third_pid = int(manager.show("dictated.service", "MainPID")["MainPID"])
            assert third_pid not in (0, first_pid, second_pid)

            # stop while a sentence is still open: it is transcribed before the daemon exits
            _wait(lambda: (s := _daemon_status(env)) and s["state"] == "ready" and s, 90, "ready")
            before = len(_transcripts(journal))
            mic.say(synthesize(SENTENCES[6]), then_mute=True)  # no pause after it: still open
            mic.muted.wait(30)
            time.sleep(0.5)  # the daemon has read it (the pipe is empty) but not closed it
            proc = dictated(env, "service", "uninstall")
            assert proc.returncode == 0 and "stopped and removed" in proc.stdout, proc.stderr
            last = _transcripts(journal)[before:]
            assert len(last) == 1 and "piano" in last[0]["text"].lower(), last
            assert last[0]["reason"] == "end_of_input"  # closed by the stop, not by a pause
            props = manager.show("dictated.service", "LoadState", "Result", "ExecMainStatus")
            assert props["LoadState"] == "not-found" and not unit_path.exists()
            assert props["ExecMainStatus"] == "0"  # a clean exit, not SIGKILL

            proc = dictated(env, "service", "status")
            assert proc.returncode == 3 and "not installed" in proc.stdout
            again = dictated(env, "service", "uninstall")
            assert again.returncode == 0 and "not installed" in again.stdout

            # a daemon that cannot start: install says so; a config error (exit 2) is not
            # restarted in a loop, since restarting cannot fix it
            bad = tmp_path / "klingon.toml"
            bad.write_text(
                settings.replace("name = 'whisper'", "name = 'whisper'\nlanguage = 'tlh'")
            )
            proc = dictated(env, "service", "install", "--config", str(bad))
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert "it is not running (last exit code 2)" in proc.stderr
            _wait(  # the daemon may still be exiting on a loaded machine
                lambda: (
                    manager.show("dictated.service", "ActiveState")["ActiveState"]
                    in ("failed", "inactive")
                ),
                60,
                "the daemon to exit",
            )
            time.sleep(7)  # longer than RestartSec: a restart would have begun by now
            props = manager.show("dictated.service", "ActiveState", "NRestarts")
            assert props == {"ActiveState": "failed", "NRestarts": "0"}, props
            report = json.loads(dictated(env, "doctor", "--json", "--config", str(bad)).stdout)
            service = {c["name"]: c for c in report["checks"]}["service"]
            assert service["status"] == "fail" and "exit code 2" in service["summary"]
            assert dictated(env, "service", "uninstall").returncode == 0
    finally:
        mic.close()


# ---- launchd, for real, on macOS -----------------------------------------------------------------


@pytest.mark.skipif(not DARWIN, reason="launchd exists only on macOS (runs in the macOS workflow)")
def test_launchd_round_trip(home_env, tmp_path):
    from dictated.service.launchd import LaunchdManager

    reason = LaunchdManager().unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # the real HOME: launchd reads agents from the user's own ~/Library/LaunchAgents
    env = {**home_env, "HOME": os.path.expanduser("~")}
    plist = Path(env["HOME"]) / "Library" / "LaunchAgents" / "org.dictated.daemon.plist"
    if plist.exists():
        pytest.skip(f"{plist} exists: this machine has dictated installed; not touching it")
    config = tmp_path / "config.toml"
    # a file paced like a microphone keeps the daemon running for ~20 s (CI has no microphone)
    config.write_text(
        f"[audio]\nsource = 'file:{DEMO_WAV}'\nrealtime = true\n[engine]\nname = 'whisper'\n"
    )
    try:
        proc = dictated(env, "service", "install", "--config", str(config))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert plist.exists()
        status = dictated(env, "service", "status", "--json")
        assert status.returncode == 0, status.stdout
        assert json.loads(status.stdout)["running"] is True
        daemon = _wait(lambda: _daemon_status(env), 60, "the agent's daemon to answer")
        assert daemon["source"].startswith("file:")
        proc = dictated(env, "service", "restart")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        proc = dictated(env, "service", "uninstall")
    assert proc.returncode == 0 and not plist.exists(), proc.stdout + proc.stderr
    status = dictated(env, "service", "status")
    assert status.returncode == 3 and "not installed" in status.stdout

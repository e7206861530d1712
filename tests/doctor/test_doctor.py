"""`dictated doctor` on real parts: PortAudio on per-process ALSA devices, a real daemon, real sockets.

Healthy: an ALSA device that delivers speech, the embedded engine, a daemon running -> exit 0, and the
level the doctor measured matches numpy's on the samples the device was given. Broken: no input
device, a socket directory the user cannot write, a missing model and a service whose interpreter is
gone, all at once -> each is named with its fix, exit 1.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import alsa
from tests.conftest import REPO
from tests.daemon_proc import start_daemon
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.skipif(
    alsa.portaudio_missing_reason() is not None, reason=str(alsa.portaudio_missing_reason())
)


def doctor(env: dict[str, str], *args: str, read_only: Path | None = None):
    """Run `dictated doctor`; with `read_only`, that directory is a read-only mount for it alone."""
    command = [sys.executable, "-m", "dictated", "doctor", *args]
    if read_only is not None:
        d = shlex.quote(str(read_only))
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind {d} {d} && mount -o remount,ro,bind {d} && exec "$@"',
            "sh",
            *command,
        ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def _by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def test_healthy_setup_exits_0_and_measures_the_microphone(isolated_env, tmp_path):
    pcm = np.concatenate([silence(0.1), synthesize(SENTENCES[3])])
    (tmp_path / "speech.raw").write_bytes(pcm.astype("<i2").tobytes())
    asound = alsa.write_config(
        tmp_path / "asound.conf",
        [alsa.speech_capture("usbmic", tmp_path / "speech.raw")],
        default="usbmic",
    )
    env = {**isolated_env, "ALSA_CONFIG_PATH": str(asound), "HOME": str(tmp_path)}
    daemon = start_daemon(
        env, "--source", "-", "--engine", "whisper", "--linger", "0", stdin=subprocess.PIPE
    )
    try:
        status = daemon.wait_ready()
        proc = doctor(env, "--json")
        human = doctor(env)
    finally:
        daemon.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = _by_name(report)
    assert report["ok"] is True
    assert {c["status"] for c in report["checks"]} <= {"ok", "skip"}, report
    assert checks["PortAudio"]["summary"].startswith("PortAudio V19")
    assert checks["input devices"]["details"]["devices"] == ["usbmic", "default"]
    mic = checks["microphone"]
    assert mic["status"] == "ok" and mic["details"]["device"] == "default"
    assert mic["details"]["device_rate"] == 16_000 and mic["details"]["seconds"] == 0.5
    reference = pcm[:8000].astype(np.float64)  # what the device delivered: the file, verbatim
    rms = 20 * math.log10(math.sqrt(np.mean(reference**2)) / 32768)
    peak = 20 * math.log10(np.max(np.abs(reference)) / 32768)
    assert abs(mic["details"]["rms_dbfs"] - rms) < 0.1, (mic, rms)
    assert abs(mic["details"]["peak_dbfs"] - peak) < 0.1, (mic, peak)
    assert checks["engine"]["status"] == "ok" and checks["engine"]["details"]["engine"] == "whisper"
    assert checks["socket directory"]["status"] == "ok"
    assert checks["daemon"]["status"] == "ok"
    assert checks["daemon"]["details"]["pid"] == status["pid"] == daemon.proc.pid
    assert checks["service"]["status"] == "skip" and "not installed" in checks["service"]["summary"]

    assert human.returncode == 0, human.stdout + human.stderr
    lines = human.stdout.splitlines()
    assert any(
        line.startswith("✓ microphone") and "'default' delivered 0.5 s" in line for line in lines
    )
    assert any(line.startswith("✓ daemon") and f"pid {daemon.proc.pid}" in line for line in lines)
    assert lines[-1] == "no problems found"


def test_each_problem_is_named_with_its_fix_and_the_exit_code_is_1(tmp_path):
    """No input device, an unwritable socket dir, a missing model, a service whose python is gone.

    A user meets a directory without write permission; root writes everywhere, so as root the
    directory is a read-only mount instead (in a private mount namespace, for the doctor alone).
    """
    base = Path(tempfile.mkdtemp(prefix="dt-doc-", dir="/tmp"))
    root = os.geteuid() == 0
    if root and shutil.which("unshare") is None:
        pytest.skip("as root, an unwritable directory needs a read-only mount (unshare -m)")
    try:
        asound = alsa.write_config(
            base / "asound.conf", [alsa.playback_only("speaker")], default="speaker"
        )
        config = base / "config" / "dictated" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text("[engine]\nname = 'whisper'\nmodel = '/nonexistent/whisper-model'\n")
        unit = base / "config" / "systemd" / "user" / "dictated.service"
        unit.parent.mkdir(parents=True)
        unit.write_text("[Service]\nExecStart=/nonexistent/venv/bin/python -m dictated run\n")
        runtime = base / "run"
        runtime.mkdir()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(base),
            "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_DATA_HOME": str(base / "data"),
            "XDG_CACHE_HOME": str(base / "cache"),
            "DICTATED_RUNTIME_DIR": str(runtime),
            "ALSA_CONFIG_PATH": str(asound),
            "HF_HUB_OFFLINE": "1",
        }
        runtime.chmod(0o500)  # the user's own directory, but not writable
        proc = doctor(env, "--json", read_only=runtime if root else None)
        human = doctor(env, read_only=runtime if root else None)
    finally:
        runtime.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = _by_name(json.loads(proc.stdout))
    failed = {name for name, c in checks.items() if c["status"] == "fail"}
    assert failed == {"input devices", "engine", "socket directory", "service"}, checks

    assert checks["input devices"]["summary"] == "no input device found"
    assert "connect a microphone" in checks["input devices"]["fix"]
    assert "microphone" not in checks  # nothing to open
    assert (
        "Whisper model directory /nonexistent/whisper-model does not exist"
        in (checks["engine"]["summary"])
    )
    assert checks["engine"]["fix"]
    sockets = checks["socket directory"]
    why = "Read-only file system" if root else "Permission denied"
    assert sockets["summary"] == f"cannot create sockets in {runtime}: {why}"
    assert "DICTATED_RUNTIME_DIR" in sockets["fix"]
    assert "/nonexistent/venv/bin/python, which no longer exists" in checks["service"]["summary"]
    assert "dictated service install" in checks["service"]["fix"]
    assert checks["config"]["status"] == "ok" and checks["config"]["summary"] == str(config)

    assert human.returncode == 1
    assert "✗ input devices" in human.stdout and "✗ socket directory" in human.stdout
    assert "    → " in human.stdout and human.stdout.rstrip().endswith("4 problem(s) found")


def test_all_zero_input_fails_with_the_microphone_permission_fix(isolated_env, tmp_path):
    asound = alsa.write_config(
        tmp_path / "asound.conf", [alsa.silent_capture("silent")], default="silent"
    )
    env = {**isolated_env, "ALSA_CONFIG_PATH": str(asound), "HOME": str(tmp_path)}
    proc = doctor(env, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    mic = _by_name(json.loads(proc.stdout))["microphone"]
    assert mic["status"] == "fail"
    assert "delivered 0.5 s of exact digital silence" in mic["summary"]
    assert "Privacy & Security › Microphone" in mic["fix"]
    assert mic["details"]["peak_dbfs"] is None  # JSON has no -infinity


def test_a_bad_config_is_a_failed_check_and_the_rest_still_run(isolated_env, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[audio]\nsource = 'microphone'\n")
    env = {**isolated_env, "HOME": str(tmp_path), "ALSA_CONFIG_PATH": str(tmp_path / "none.conf")}
    alsa.write_config(tmp_path / "none.conf", [alsa.playback_only("speaker")], default="speaker")
    proc = doctor(env, "--json", "--config", str(config))
    assert proc.returncode == 1
    checks = _by_name(json.loads(proc.stdout))
    assert checks["config"]["status"] == "fail" and "audio.source" in checks["config"]["summary"]
    assert {"engine", "socket directory", "daemon", "service"} <= set(checks)


def test_a_socket_path_over_the_unix_limit_is_named(isolated_env, tmp_path):
    from dictated.paths import MAX_IPC_PATH

    config = tmp_path / "config.toml"
    config.write_text("[audio]\nsource = '-'\n[engine]\nname = 'whisper'\n")
    long_dir = "/tmp/" + "d" * (MAX_IPC_PATH - len("/tmp/") - len("/events") + 1)
    env = {**isolated_env, "HOME": str(tmp_path), "DICTATED_RUNTIME_DIR": long_dir}
    proc = doctor(env, "--json", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = _by_name(json.loads(proc.stdout))
    assert checks["microphone"]["status"] == "skip"  # stdin source: no microphone to check
    sockets = checks["socket directory"]
    assert sockets["status"] == "fail" and sockets["summary"] == f"{long_dir}: path too long"
    assert f"over the {MAX_IPC_PATH}-byte limit" in sockets["fix"]
    assert not os.path.exists(long_dir)

"""Exit codes mean one thing, and a closed stdout is not an error worth a traceback.

2: a restart cannot fix it (bad config or usage, unknown engine, engine package or model missing,
no such file, not audio), so systemd's `RestartPreventExitStatus=2` stops the loop. 1: a restart
may (a device gone, a server or daemon not up, a crash). 141: the reader of stdout went away.
Each class is checked through the real CLI, as a service manager runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audio.test_load import crafted_wav
from tests.conftest import DEMO_WAV
from tests.daemon_proc import REPO, start_stdin_daemon


def dictated(*args: str, env, stdout=subprocess.PIPE, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "dictated", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_each_error_class_maps_to_whether_a_restart_can_fix_it():
    from dictated.cli import exit_code
    from dictated.errors import (
        AudioError,
        AudioInputError,
        ConfigError,
        DictatedError,
        MissingDependencyError,
        ModelError,
        ModelUnavailable,
        RemoteError,
        ServiceError,
        ServiceManagerUnavailable,
    )

    permanent = [
        ConfigError("x"),
        AudioInputError("x"),
        ModelError("x"),
        MissingDependencyError("torch", "p", "i"),
        ServiceManagerUnavailable("x"),
    ]
    restartable = [
        DictatedError("x"),
        AudioError("x"),
        RemoteError("x"),
        ServiceError("x"),
        ModelUnavailable("x"),
    ]
    assert [exit_code(e) for e in permanent] == [2] * len(permanent)
    assert [exit_code(e) for e in restartable] == [1] * len(restartable)


def test_a_model_download_with_no_network_may_be_fixed_by_a_restart(tmp_path, monkeypatch):
    """At login the network may not be up yet: a failed download is not a reason to stop for good
    (a 2 would end the service); a corrupt model is."""
    from dictated.cli import exit_code
    from dictated.downloads import download_snapshot
    from dictated.errors import ModelUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what no network looks like to the hub client
    with pytest.raises(ModelUnavailable, match="could not download") as raised:
        download_snapshot("CohereLabs/not-cached-here", cache_dir=tmp_path)
    assert exit_code(raised.value) == 1


def test_a_corrupt_whisper_model_exits_2(isolated_env, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    result = dictated(
        "transcribe",
        "--engine",
        "whisper",
        "--model",
        str(tmp_path),
        str(DEMO_WAV),
        env=isolated_env,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot load Whisper model" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def not_audio(tmp_path) -> Path:
    path = tmp_path / "speech.raw"
    path.write_bytes(bytes(3200))
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--engine", "wisper"], "engine.name"),  # unknown engine
        (["run", "--hangover-ms", "soon"], "hangover-ms"),  # argparse usage
        (["run", "--source", "file:/nonexistent/talk.wav"], "audio file not found"),
        (["run", "--source", "file:{not_audio}"], "headerless raw PCM"),
        (["transcribe", "/nonexistent/talk.wav"], "audio file not found"),
        (["transcribe", "{not_audio}"], "headerless raw PCM"),
        (["transcribe", "{ghz}"], "sample rate of 1000000000 Hz"),
        (["run", "--source", "file:{ghz}"], "sample rate of 1000000000 Hz"),
        (["run", "--engine", "whisper", "--model", "/nonexistent", "--source", "file:{demo}"],)
        + ("Whisper model directory /nonexistent does not exist",),
    ],
)
def test_what_a_restart_cannot_fix_exits_2(isolated_env, not_audio, tmp_path, args, says):
    ghz = crafted_wav(tmp_path / "ghz.wav", 1_000_000_000, 1, frames=1600)
    args = [a.format(not_audio=not_audio, ghz=ghz, demo=DEMO_WAV) for a in args]
    result = dictated(*args, env=isolated_env)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_a_missing_engine_package_exits_2_naming_the_command_that_installs_it(
    isolated_env, tmp_path
):
    """torch made unimportable (find_spec gives None) the way an environment without it is."""
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None\n')
    env = {
        **isolated_env,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    result = dictated("run", "--engine", "cohere-torch", "--source", f"file:{DEMO_WAV}", env=env)
    assert result.returncode == 2, result.stderr
    assert "needs torch, which is not installed" in result.stderr
    assert f"-m pip install -e '{REPO}[torch]'" in result.stderr  # this checkout is editable
    assert "'dictated[torch]'" not in result.stderr  # not on any index: that fails


def test_input_that_fails_part_way_exits_2_after_its_audio_is_transcribed(isolated_env):
    """Audio, then half a sample: what came before is published; the exit says a restart of the
    same input cannot help (the source's own failure decides, not a blanket 1)."""
    audio = DEMO_WAV.read_bytes()[44:] + b"\x01"  # s16le after the WAV header, then one odd byte
    result = subprocess.run(
        [sys.executable, "-m", "dictated", "run", "--source", "-", "--linger", "0"],
        input=audio,
        capture_output=True,
        env=isolated_env,
        timeout=120,
        cwd=REPO,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "stdin ended in the middle of a sample" in stderr and "Traceback" not in stderr
    assert "utterance" in stderr  # the audio before the failure was transcribed


def test_a_microphone_that_is_not_there_exits_1(isolated_env):
    """Plugging it in may fix it, so a service manager may restart."""
    pytest.importorskip("sounddevice", reason="needs PortAudio (libportaudio2)")
    result = dictated(
        "run", "--engine", "whisper", "--input-device", "no-such-device-h4", env=isolated_env
    )
    assert result.returncode == 1, result.stderr
    assert "no-such-device-h4" in result.stderr and "Traceback" not in result.stderr


def test_no_daemon_to_talk_to_exits_1(isolated_env):
    result = dictated("status", env=isolated_env)
    assert result.returncode == 1 and "no dictated daemon is running" in result.stderr


def closed_pipe_run(*args: str, env) -> subprocess.CompletedProcess:
    """The command writing into a real pipe whose reader has already gone (`| head -0`)."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        return dictated(*args, env=env, stdout=write_fd)
    finally:
        os.close(write_fd)


def test_a_closed_stdout_exits_quietly_like_a_tool_killed_by_sigpipe(isolated_env):
    result = closed_pipe_run("config", env=isolated_env)
    assert (result.returncode, result.stderr) == (141, "")


def test_status_into_a_closed_pipe_says_nothing(isolated_env):
    """`dictated status | head -3` against a real daemon: no BrokenPipeError traceback."""
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        for args in (["status"], ["status", "--json"], ["language"]):
            result = closed_pipe_run(*args, env=isolated_env)
            assert (result.returncode, result.stderr) == (141, ""), args
        shell = subprocess.run(  # and through a shell's pipe to head, for the record
            ["bash", "-c", f"{sys.executable} -m dictated status | head -n 1"],
            env=isolated_env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert shell.returncode == 0 and shell.stdout.count("\n") == 1
        assert "Traceback" not in shell.stderr, shell.stderr
    finally:
        daemon.stop()

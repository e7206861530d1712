"""The control socket of a real daemon: every command, and garbage that must not kill it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import numpy as np
import pytest
import zmq

from dictated.clients.control import CommandFailed
from tests.daemon_proc import (
    daemon_command,
    feed,
    start_daemon,
    start_stdin_daemon,
    wait_for_transcripts,
)
from tests.speech import SENTENCES

pytestmark = pytest.mark.slow  # the real daemon with a real model


@pytest.fixture
def stdin_daemon(isolated_env):
    """A daemon reading raw audio from a pipe that stays open until the test ends."""
    daemon = start_stdin_daemon(isolated_env)
    daemon.wait_ready()
    yield daemon
    daemon.stop()


def test_status_reports_the_running_daemon(stdin_daemon):
    status = stdin_daemon.control.request("status")
    assert status["state"] == "ready"
    assert status["pid"] == stdin_daemon.proc.pid
    assert status["engine"] == "whisper" and status["language"] == "en"
    assert status["endpoints"]["control"] == stdin_daemon.control_endpoint
    assert stdin_daemon.events_endpoint in status["endpoints"]["events"]


def test_pause_drops_nothing_already_heard_and_ignores_audio_while_paused(stdin_daemon):
    feed(stdin_daemon, SENTENCES[0])
    first = wait_for_transcripts(stdin_daemon, 1)
    assert stdin_daemon.control.request("pause")["state"] == "paused"
    assert stdin_daemon.control.request("status")["state"] == "paused"
    feed(stdin_daemon, SENTENCES[1])  # spoken while paused: not transcribed
    time.sleep(1.0)
    assert stdin_daemon.control.request("resume")["state"] == "ready"
    feed(stdin_daemon, SENTENCES[2])
    transcripts = wait_for_transcripts(stdin_daemon, 2)
    assert len(transcripts) == 2
    assert "train" in transcripts[0]["text"].lower() and first[0]["id"] == transcripts[0]["id"]
    assert "meet" in transcripts[1]["text"].lower()


def test_language_command_validates_against_the_engine(stdin_daemon):
    assert stdin_daemon.control.request("language")["language"] == "en"
    assert stdin_daemon.control.request("language", language="en")["language"] == "en"
    with pytest.raises(CommandFailed, match="does not support language 'de'"):
        stdin_daemon.control.request("language", language="de")
    with pytest.raises(CommandFailed, match="must be a string"):
        stdin_daemon.control.request("language", language=5)


def test_history_replays_the_journal(stdin_daemon):
    feed(stdin_daemon, SENTENCES[3])
    (transcript,) = wait_for_transcripts(stdin_daemon, 1)
    reply = stdin_daemon.control.request("history", since=transcript["seq"] - 1)
    assert [e["event"]["seq"] for e in reply["events"]] == [transcript["seq"]]
    assert reply["last_seq"] >= transcript["seq"]
    assert stdin_daemon.control.request("history", since=transcript["seq"])["events"] == []
    for bad in ({"since": -1}, {"since": "x"}, {"since": 0, "limit": 0}):
        with pytest.raises(CommandFailed):
            stdin_daemon.control.request("history", **bad)


@pytest.mark.parametrize(
    "frames",
    [
        [b"not json at all"],
        [b"\x00\x01\x02\xff" * 16],
        [b'{"cmd": "selfdestruct"}'],
        [b'"status"'],
        [b'{"v": 1}', b"second frame"],
        [os.urandom(4096)],
    ],
)
def test_malformed_requests_get_an_error_reply_and_the_daemon_lives(stdin_daemon, frames):
    context = zmq.Context.instance()
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(stdin_daemon.control_endpoint)
    req.send_multipart(frames)
    reply = json.loads(req.recv())
    req.close()
    assert reply["ok"] is False and reply["error"]
    assert stdin_daemon.control.request("status")["state"] == "ready"


def test_random_bytes_on_the_raw_socket_do_not_kill_the_daemon(stdin_daemon):
    path = stdin_daemon.control_endpoint.removeprefix("ipc://")
    rng = np.random.default_rng(1)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(path)
            raw.sendall(rng.bytes(int(rng.integers(1, 2048))))
    assert stdin_daemon.control.request("status")["state"] == "ready"
    assert stdin_daemon.proc.poll() is None


def test_admin_commands_through_the_cli(stdin_daemon):
    env = stdin_daemon.env

    def cli(*args):
        return subprocess.run(
            ["python", "-m", "dictated", *args], env=env, capture_output=True, text=True, timeout=30
        )

    assert "ready" in cli("status").stdout
    assert cli("pause").stdout.strip() == "paused"
    assert cli("resume").stdout.strip() == "ready"
    assert cli("language").stdout.strip() == "en"
    bad = cli("language", "xx")
    assert bad.returncode == 1 and "does not support language 'xx'" in bad.stderr
    assert json.loads(cli("status", "--json").stdout)["pid"] == stdin_daemon.proc.pid


def test_admin_command_without_a_daemon_says_so(isolated_env):
    result = subprocess.run(
        ["python", "-m", "dictated", "status"],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "no dictated daemon is running" in result.stderr


def test_second_daemon_is_refused(stdin_daemon):
    result = subprocess.run(
        daemon_command("--source", "-", "--engine", "whisper"),
        env=stdin_daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "already running" in result.stderr
    assert stdin_daemon.control.request("status")["state"] == "ready"


def test_admin_commands_find_a_daemon_in_a_custom_socket_dir(isolated_env, tmp_path):
    import tempfile

    custom = tempfile.mkdtemp(prefix="dtc-", dir="/tmp")
    env = {k: v for k, v in isolated_env.items() if k != "DICTATED_RUNTIME_DIR"}
    config = tmp_path / "c.toml"
    config.write_text(f'[transport]\nruntime_dir = "{custom}"\n')
    daemon = start_daemon(
        {**env, "DICTATED_RUNTIME_DIR": custom},
        "--source",
        "-",
        "--engine",
        "whisper",
        "--config",
        str(config),
        stdin=subprocess.PIPE,
    )
    try:
        daemon.wait_ready()

        def cli(*args):
            return subprocess.run(
                ["python", "-m", "dictated", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        assert cli("status").returncode == 1  # not in the default place
        assert "ready" in cli("status", "--runtime-dir", custom).stdout
        assert "ready" in cli("status", "--config", str(config)).stdout
    finally:
        daemon.stop()


def test_status_events_say_paused_while_paused(stdin_daemon):
    """Every status event published while paused says so (not only the pause reply)."""
    import zmq

    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(stdin_daemon.events_endpoint)
    time.sleep(0.5)  # let the subscription reach the publisher
    stdin_daemon.control.request("pause")
    stdin_daemon.control.request("language", language="en")  # publishes a status event
    states = []
    while sub.poll(1000):
        states.append(json.loads(sub.recv_multipart()[1])["state"])
    sub.close()
    assert states == ["paused", "paused"]
    assert stdin_daemon.control.request("resume")["state"] == "ready"


def _random_value(rng: np.random.Generator, depth: int = 0):
    """A random JSON value: what a confused or hostile key binder might send as an argument."""
    kind = int(rng.integers(0, 9 if depth == 0 else 6))  # nesting one deep, long text on top
    makers = [
        lambda: None,
        lambda: bool(rng.integers(0, 2)),
        lambda: int(rng.integers(-(2**40), 2**40)),
        lambda: float(rng.normal() * 1e6),
        lambda: "".join(chr(int(c)) for c in rng.integers(1, 0x2FFF, int(rng.integers(0, 40)))),
        lambda: rng.choice(["press", "release", "toggle", "on", "off", "me", "", "PRESS"]).item(),
        lambda: [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))],
        lambda: {str(k): _random_value(rng, depth + 1) for k in range(int(rng.integers(0, 4)))},
        lambda: "x" * int(rng.integers(1000, 10_000)),  # two stay under the request bound
    ]
    return makers[kind]()


def test_the_key_and_switch_commands_survive_random_arguments(stdin_daemon):
    """ptt, toggle and typing with random arguments: each reply is a result or a clear error,
    never a crash, and the daemon's state stays one it can explain."""
    rng = np.random.default_rng(18)
    control = stdin_daemon.control
    for _ in range(150):  # the daemon logs each refusal; its stderr is a pipe read at exit
        cmd = rng.choice(["ptt", "toggle", "typing"]).item()
        keys = ["action", "channel", "armed", "at", "v2", "cmd2"]
        args = {rng.choice(keys).item(): _random_value(rng) for _ in range(int(rng.integers(0, 3)))}
        try:
            reply = control.request(cmd, **args)
        except CommandFailed as exc:
            assert str(exc) and "internal error" not in str(exc).lower(), exc
            continue
        assert {"mode", "held", "armed", "listening"} <= set(reply), reply
    status = control.request("status")
    assert stdin_daemon.proc.poll() is None and status["mode"] == "continuous"
    if not status["listening"]:
        control.request("toggle")
    control.request("ptt", action="release")
    control.request("typing", armed=True)
    status = control.request("status")
    assert (status["state"], status["held"], status["armed"]) == ("ready", False, True)


def test_the_key_and_switch_commands_through_the_cli(stdin_daemon):
    def cli(*args):
        return subprocess.run(
            ["python", "-m", "dictated", *args],
            env=stdin_daemon.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert cli("ptt", "press").stdout.strip() == "continuous, key held, typing armed, listening"
    assert cli("ptt", "release").stdout.strip() == "continuous, key up, typing armed, listening"
    assert "typing disarmed" in cli("typing", "off").stdout
    assert "typing armed" in cli("typing", "toggle").stdout
    assert cli("toggle").stdout.strip() == "continuous, key up, typing armed, not listening"
    refused = cli("ptt", "press")
    assert refused.returncode == 1 and "listening is off" in refused.stderr
    shown = cli("status").stdout
    assert re.search(r"\n  key/typing +continuous, key up, typing armed, not listening\n", shown)
    assert len(re.findall(r"\n  control ", shown)) <= 1  # the endpoint's row only
    assert cli("toggle").stdout.strip().endswith(", listening")
    bad = cli("ptt", "press", "--channel", "them")
    assert bad.returncode == 1 and "'channel' must be one of" in bad.stderr
    assert json.loads(cli("typing", "on", "--json").stdout)["armed"] is True


def test_ptt_toggle_and_at_are_judged_by_the_daemon(stdin_daemon):
    """`action: toggle` presses when the key is up and releases when it is held (the daemon
    owns `held`); `at` must be a time, and a press made before the last release is dropped."""
    control = stdin_daemon.control
    now = time.time()
    assert control.request("ptt", action="toggle", at=now)["held"] is True
    assert control.request("ptt", action="toggle", at=now + 0.2)["held"] is False
    assert control.request("ptt", action="press", at=now + 0.1)["held"] is False  # stale
    assert control.request("ptt", action="press", at=now + 0.3)["held"] is True
    assert control.request("ptt", action="release")["held"] is False
    for bad in ("soon", True, [1], {"t": 1}):
        with pytest.raises(CommandFailed, match="'at' must be a time"):
            control.request("ptt", action="press", at=bad)
    with pytest.raises(CommandFailed, match="'action' must be one of .*toggle"):
        control.request("ptt", action="hold")

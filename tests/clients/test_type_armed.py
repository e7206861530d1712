"""dictated-type types only what the daemon says to: armed finals, never a voice command, and with
--armed-by-key only what was said while the key was held; a change of arming is said on stderr.

Against a fake daemon (real ZeroMQ PUB and REP sockets publishing the contract's fields), so the
rule is checked event by event; test_hotkey_e2e.py runs it with the real daemon and speech.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import pytest

from dictated.clients.keyboard.gate import StateWatch, typed
from dictated.clients.keyboard.notify import notify_argv
from tests.clients.hotkey_fakes import FakeEvents, fake_daemon


def test_the_typing_rule():
    assert typed({"text": "old daemon"})  # no fields: typed, as before
    assert typed({"armed": True, "by_key": False})
    assert not typed({"armed": False})
    assert not typed({"armed": True, "command": "start_dictation"})  # a command is never typed
    assert not typed({"armed": True, "by_key": False}, armed_by_key=True)
    assert not typed({"armed": True}, armed_by_key=True)
    assert typed({"armed": True, "by_key": True}, armed_by_key=True)
    assert not typed({"armed": False, "by_key": True}, armed_by_key=True)


def test_state_changes_are_said_once():
    watch = StateWatch()
    assert watch.update({"state": "ready"}) is None  # an older daemon says nothing of it
    assert watch.update({"mode": "continuous", "armed": True, "listening": True}) is None
    assert watch.update({"mode": "continuous", "armed": True, "held": True}) is None
    assert "typing disarmed" in watch.update({"mode": "continuous", "armed": False})
    assert watch.update({"mode": "continuous", "armed": False}) is None  # a heartbeat
    assert "not listening" in watch.update({"listening": False})
    assert "push-to-talk: typing disarmed" in StateWatch().update(
        {"mode": "push-to-talk", "armed": False, "listening": True}
    )


def test_notifications_take_the_message_as_an_argument(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: f"/usr/bin/{tool}")
    message = '" & do shell script "id'
    mac = notify_argv(message, "darwin")
    assert mac[:2] == ["/usr/bin/osascript", "-e"] and mac[3] == message
    assert "do shell script" not in mac[2]
    assert notify_argv(message, "linux")[-3:] == ["--", "dictated", message]
    monkeypatch.setattr("shutil.which", lambda tool: None)
    assert notify_argv("x", "linux") is None


@pytest.fixture
def daemon(isolated_env):
    with fake_daemon(isolated_env["DICTATED_RUNTIME_DIR"]) as (control, events):
        yield control, events


class Typer:
    """dictated-type --dry-run, its stderr read line by line as it comes."""

    def __init__(self, env: dict, *args: str):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dictated.clients.keyboard.cli",
                "--dry-run",
                "--no-notify",
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise TimeoutError(f"dictated-type never said {text!r}")

    def finish(self) -> str:
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0
        return out


def final(text: str, **fields) -> dict:
    return {"id": f"u-{text}", "text": text, "language": "en", **fields}


def subscribed(typer: Typer, events: FakeEvents, **state) -> None:
    """Publish the state until the client shows it: from then on it receives every event."""
    deadline = time.monotonic() + 30
    while True:
        events.publish("status", state="ready", **state)
        try:
            typer.wait_for("typing", timeout_s=0.2)
            return
        except TimeoutError:
            assert time.monotonic() < deadline, "dictated-type did not subscribe"


def test_only_armed_finals_are_typed_and_voice_commands_never(isolated_env, daemon):
    _, events = daemon
    typer = Typer(isolated_env, "--count", "6")
    try:
        subscribed(typer, events, mode="continuous", armed=False, listening=True)
        events.publish("transcript", **final("one", armed=False, by_key=False))
        events.publish("status", state="ready", mode="continuous", armed=True, listening=True)
        assert "typing armed" in typer.wait_for("typing")
        events.publish("transcript", **final("two", armed=True, by_key=False))
        events.publish(
            "transcript", **final("Stop dictation.", armed=False, command="stop_dictation")
        )
        events.publish("status", state="ready", mode="continuous", armed=False, listening=True)
        assert "typing disarmed" in typer.wait_for("typing")
        events.publish("transcript", **final("three", armed=False, by_key=False))
        events.publish(
            "transcript", **final("Start dictation.", armed=True, command="start_dictation")
        )
        events.publish("transcript", **final("four"))  # an older daemon: no fields, typed
        out = typer.finish()
    finally:
        if typer.proc.poll() is None:
            typer.proc.kill()
    assert out.splitlines() == ['type "two"', 'type " four"']


def test_armed_by_key_types_only_what_was_said_with_the_key_held(isolated_env, daemon):
    _, events = daemon
    typer = Typer(isolated_env, "--count", "3", "--armed-by-key")
    try:
        subscribed(typer, events, mode="push-to-talk", armed=True, listening=True)
        events.publish("transcript", **final("overheard", armed=True, by_key=False))
        events.publish("transcript", **final("held", armed=True, by_key=True))
        events.publish("transcript", **final("old daemon"))  # no by_key: not known to be held
        out = typer.finish()
    finally:
        if typer.proc.poll() is None:
            typer.proc.kill()
    assert out.splitlines() == ['type "held"']

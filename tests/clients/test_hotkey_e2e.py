"""Push-to-talk end to end, as a user has it: the real daemon (embedded Whisper tiny.en) hearing
real speech (espeak-ng) streamed in real time, `dictated-hotkey` on Xvfb driven by
`xdotool keydown/keyup`, and `dictated-type` typing into a real xterm whose lines land in a file.
Exactly the held speech is typed, nothing else; the toggle; typing only while armed.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.daemon_proc import DaemonProcess, feed, start_stdin_daemon, wait_for_transcripts
from tests.dictation import composed_text
from tests.events import TimedEvents
from tests.speech import SENTENCES, silence, synthesize
from tests.xsession import open_session

pytestmark = pytest.mark.slow  # the real daemon with a real model, in real time

SR = 16_000
BLOCK = SR // 10  # 100 ms of audio per write


@pytest.fixture
def xsession(tmp_path):
    yield from open_session(tmp_path)


def say(daemon: DaemonProcess, *parts: np.ndarray) -> None:
    """Write audio into the daemon's stdin at the pace it is spoken."""
    pcm = np.concatenate(parts)
    t0 = time.monotonic()
    for i in range(0, len(pcm), BLOCK):
        daemon.feed(pcm[i : i + BLOCK].astype("<i2").tobytes())
        delay = t0 + (i + BLOCK) / SR - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Client:
    """A client process whose stderr is read line by line as it comes."""

    def __init__(self, env: dict, *argv: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"never said {text!r}: {''.join(self.lines)}"
            time.sleep(0.05)

    def wait(self, timeout_s: float = 60) -> str:
        self.proc.wait(timeout_s)
        time.sleep(0.1)  # the reader thread takes the last lines
        return "".join(self.lines)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait(20)


def typer(env: dict, *args: str) -> Client:
    """dictated-type, once it is subscribed (it types live events only)."""
    client = Client(env, "dictated.clients.keyboard.cli", "--no-notify", *args)
    client.wait_for("connected to the daemon")
    time.sleep(0.3)  # the subscription follows the handshake
    return client


def hotkey(env: dict, *args: str) -> Client:
    client = Client(env, "dictated.clients.hotkey.cli", *args)
    client.wait_for("to talk")  # the key is grabbed
    return client


def typed_file(xsession) -> str:
    return xsession.out.read_text(encoding="utf-8")


def test_holding_f9_types_exactly_the_held_speech(isolated_env, xsession):
    """Push-to-talk mode: speech before the press and after the release is not even transcribed;
    the held sentence is typed, and nothing else (F9 itself is grabbed: no escape sequence)."""
    env = {**isolated_env, **xsession.env}
    daemon = start_stdin_daemon(isolated_env, "--mode", "push-to-talk")
    clients: list[Client] = []
    clock = TimedEvents(daemon.events_endpoint, topics=(b"transcript",))  # arrival times
    try:
        daemon.wait_ready()
        clients += [typer(env, "--count", "1"), hotkey(env)]
        say(daemon, silence(0.5), synthesize(SENTENCES[0]), silence(1.0))  # before: not held
        xsession.xdotool("keydown", "F9")
        clients[1].wait_for("press: held")  # the daemon has it
        say(daemon, silence(0.2), synthesize(SENTENCES[1]), silence(0.4))  # held, auto-repeating
        released = time.time()  # before xdotool runs: the figure is an upper bound
        xsession.xdotool("keyup", "F9")
        clients[1].wait_for("release: released")
        say(daemon, silence(0.8), synthesize(SENTENCES[2]), silence(1.5))  # after: not held
        typed_err = clients[0].wait()
        transcripts = wait_for_transcripts(daemon, 1)
    finally:
        hotkey_err = clients[1].stop() if len(clients) > 1 else ""
        for client in clients:
            client.stop()
        daemon.stop()
        clock.close()
    assert clients[0].proc.returncode == 0, typed_err
    assert len(transcripts) == 1 and transcripts[0]["by_key"] is True, transcripts
    assert xsession.read_back(1) == transcripts[0]["text"]
    assert typed_file(xsession) == transcripts[0]["text"] + "\n"  # nothing else, F9 neither
    assert "press: held" in hotkey_err and "release: released" in hotkey_err
    assert hotkey_err.count("press: held") == 1, hotkey_err  # auto-repeat sent no second press
    [(_, arrived)] = clock.of("transcript")
    print(  # not asserted: speed is the benchmarks' business (-s shows it)
        f"\nF9 up (xdotool) -> final at a subscriber: {arrived - released:.3f} s "
        f"(engine {transcripts[0]['timings_ms'].get('engine', 0):.0f} ms, "
        f"audio {transcripts[0]['audio_s']} s)"
    )


def test_toggle_in_continuous_mode_types_only_what_was_said_between_the_taps(
    isolated_env, xsession
):
    """Continuous mode with `dictated-type --armed-by-key`: everything is transcribed, only the
    speech between two taps of the key is typed."""
    env = {**isolated_env, **xsession.env}
    daemon = start_stdin_daemon(isolated_env)
    clients: list[Client] = []
    try:
        daemon.wait_ready()
        clients += [typer(env, "--count", "3", "--armed-by-key"), hotkey(env, "--toggle")]
        say(daemon, silence(0.5), synthesize(SENTENCES[3]), silence(1.5))  # the voice alone
        xsession.xdotool("key", "F9")  # tap: start
        clients[1].wait_for("toggle: held")  # the daemon has it
        say(daemon, silence(0.2), synthesize(SENTENCES[4]), silence(0.4))
        xsession.xdotool("keydown", "F9")  # tap: stop, the key held as long as a person does:
        time.sleep(0.3)  # the final (already speculated) is ready before the key is up
        xsession.xdotool("keyup", "F9")
        clients[1].wait_for("toggle: released")
        say(daemon, silence(1.0), synthesize(SENTENCES[5]), silence(1.5))
        typed_err = clients[0].wait()
        transcripts = wait_for_transcripts(daemon, 3)
    finally:
        for client in clients:
            client.stop()
        daemon.stop()
    assert clients[0].proc.returncode == 0, typed_err
    assert [t["by_key"] for t in transcripts] == [False, True, False], transcripts
    assert xsession.read_back(1) == transcripts[1]["text"]
    assert typed_file(xsession) == transcripts[1]["text"] + "\n"


def test_typing_only_while_armed_by_voice_and_by_command(isolated_env, xsession):
    """ "Stop dictation" disarms typing (and is not typed), "start dictation" arms it again;
    `dictated typing off` does the same from the command line; dictated-type says each change."""
    env = {**isolated_env, **xsession.env}
    daemon = start_stdin_daemon(isolated_env)
    client = None
    try:
        daemon.wait_ready()
        client = typer(env, "--count", "7")
        for text in (SENTENCES[6], "Stop dictation.", SENTENCES[7], "Start dictation."):
            feed(daemon, text)
        wait_for_transcripts(daemon, 4)
        client.wait_for("typing armed")
        assert daemon.control.request("typing", armed=False)["armed"] is False
        client.wait_for("typing disarmed")
        feed(daemon, SENTENCES[8])
        wait_for_transcripts(daemon, 5)
        daemon.control.request("typing", armed=True)
        feed(daemon, SENTENCES[9])
        feed(daemon, SENTENCES[10])
        typed_err = client.wait()
        transcripts = wait_for_transcripts(daemon, 7)
    finally:
        if client is not None:
            client.stop()
        daemon.stop()
    assert client.proc.returncode == 0, typed_err
    assert [t.get("command") for t in transcripts[:4]] == [
        None,
        "stop_dictation",
        None,
        "start_dictation",
    ], [t["text"] for t in transcripts]
    assert [t["armed"] for t in transcripts] == [True, False, False, True, False, True, True]
    wanted = [transcripts[i] for i in (0, 5, 6)]
    assert xsession.read_back(1) == composed_text(wanted)
    assert typed_file(xsession) == composed_text(wanted) + "\n"
    changes = [line for line in typed_err.splitlines() if "armed" in line]
    assert [("disarmed" in line) for line in changes] == [True, False, True, False], typed_err

"""The daemon on a microphone: real PortAudio capture from ALSA devices (no sound card needed).

Each ALSA device reads a named pipe this test writes to, so the test decides what the "microphone"
hears, when it goes dead and when it comes back. See tests/alsa.py for how the per-process ALSA
world is built: it is re-read when PortAudio re-initialises, which is how a re-plugged device
becomes visible, so "unplugging" here is rewriting that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dictated.shutdown import SERVICE_STOP_TIMEOUT_S
from tests import alsa
from tests.daemon_proc import start_daemon
from tests.events import Events
from tests.speech import SENTENCES, silence, synthesize

pytestmark = [
    pytest.mark.skipif(
        alsa.portaudio_missing_reason() is not None, reason=str(alsa.portaudio_missing_reason())
    ),
    pytest.mark.slow,  # the real daemon with a real model
]

CHUNK = 1600  # 100 ms


class Microphone:
    """A FIFO the ALSA device reads: speech as fast as the pipe takes it, room silence in real
    time between, and silence of its own when told to go dead (the driver then blocks in read).

    `say(pcm, then_stall=True)` goes dead right after writing `pcm`, on the writer's own thread:
    a stall mid-sentence with all of the sentence in the pipe, whatever the thread's timing."""

    def __init__(self, fifo: Path):
        os.mkfifo(fifo)
        self.path = fifo
        self.fd = os.open(fifo, os.O_RDWR)  # a writer exists before PortAudio probes the device
        self.live = threading.Event()
        self._said: list[np.ndarray | None] = []  # None: go dead here
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def say(self, pcm: np.ndarray, then_stall: bool = False) -> None:
        with self._lock:
            self._said.append(pcm)
            if then_stall:
                self._said.append(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.live.is_set():
                time.sleep(0.02)
                continue
            with self._lock:
                pending = self._said.pop(0) if self._said else False
            if pending is None:
                self.live.clear()
            elif pending is not False:
                os.write(self.fd, pending.astype("<i2").tobytes())
            else:
                os.write(self.fd, np.zeros(CHUNK, "<i2").tobytes())
                time.sleep(CHUNK / 16000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.fd)


def _transcripts(events: Events) -> list[str]:
    return [t["text"].lower() for t in events.of("transcript")]


def _device_states(events: Events) -> list[str]:
    states = [s.get("device_state") for s in events.of("status") if s.get("device_state")]
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]  # changes only


def _fds_on(pid: int, path: Path) -> int:
    """How many of the process's file descriptors are open on `path` (the FIFO the device reads)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
    return count


def _start(isolated_env, config: Path, journal: Path, port: int):
    env = {**isolated_env, "ALSA_CONFIG_PATH": str(config)}
    return start_daemon(
        env,
        "--source", "mic",
        "--input-device", "testmic",
        "--engine", "whisper",
        "--linger", "0",
        "--journal", str(journal),
        "--pub", f"tcp://127.0.0.1:{port}",
    )  # fmt: skip


def test_microphone_lost_mid_sentence_then_replugged_keeps_dictating(
    isolated_env, tmp_path, free_port
):
    """The device stalls in the middle of a sentence (the driver stops calling back), then is
    unplugged; a re-plugged one under the same name appears. The daemon neither exits nor
    hangs: what was said before is transcribed and journaled, and speech after the return too."""
    first = Microphone(tmp_path / "a.fifo")
    config = alsa.write_config(
        tmp_path / "asound.conf",
        [alsa.fifo_capture("testmic", first.path), alsa.playback_only("speaker")],
        default="testmic",
    )
    journal = tmp_path / "journal.jsonl"
    events = Events(f"tcp://127.0.0.1:{free_port}")
    daemon = _start(isolated_env, config, journal, free_port)
    second = None
    try:
        daemon.wait_ready()
        first.say(np.concatenate([silence(0.5), synthesize(SENTENCES[0]), silence(1.5)]))
        first.live.set()
        assert events.until(lambda e: len(e.of("transcript")) == 1, 60), events
        # written at once, then nothing: the driver stalls in the middle of the utterance
        first.say(synthesize(SENTENCES[6]), then_stall=True)
        assert events.until(lambda e: "lost" in _device_states(e), 30), events
        # unplugged: the device is gone from the ALSA world; a new one will appear by that name
        second = Microphone(tmp_path / "b.fifo")
        second.live.set()  # room silence from the new device as soon as it is opened
        alsa.write_config(
            config,
            [alsa.fifo_capture("testmic", second.path), alsa.playback_only("speaker")],
            default="testmic",
        )
        # the old driver, stuck in a read, finishes it and lets go of its stream
        os.write(first.fd, np.zeros(16000, "<i2").tobytes())
        # the sentence under way when the device died is transcribed without waiting for it
        assert events.until(lambda e: len(e.of("transcript")) == 2, 60), events
        second.say(np.concatenate([silence(1.0), synthesize(SENTENCES[3]), silence(1.5)]))
        assert events.until(lambda e: len(e.of("transcript")) == 3, 90), events
        status = daemon.control.request("status")
        assert status["device_state"] == "ok" and status["state"] == "ready"
        assert daemon.proc.poll() is None  # still running
        assert _fds_on(daemon.proc.pid, second.path) >= 1  # capturing from the re-plugged device
        assert _fds_on(daemon.proc.pid, first.path) == 0  # the dead one was let go
    finally:
        daemon.stop()
        events.close()
        first.close()
        if second is not None:
            second.close()
    assert daemon.proc.returncode == 0  # stopped by the test's Ctrl-C, not by the loss
    texts = _transcripts(events)
    assert "train" in texts[0] and "piano" in texts[1] and "library" in texts[2], texts
    assert events.of("transcript")[1]["reason"] == "end_of_input"  # ended by the loss
    assert _device_states(events) == ["ok", "lost", "ok"]
    lost = next(s for s in events.of("status") if s.get("device_state") == "lost")
    assert "vanished/stopped" in lost["detail"] and lost["device"] == "testmic"
    assert not any(e.get("fatal") for e in events.of("error"))
    # the stream timeline runs on through the loss (capture time, the dead seconds included)
    ends = [(t["stream_start"], t["stream_end"]) for t in events.of("transcript")]
    assert ends == sorted(ends) and ends[2][0] > ends[1][1] + 5.0, ends
    journaled = [json.loads(line) for line in journal.read_text().splitlines()]
    said_before = [e["event"]["text"].lower() for e in journaled if e["topic"] == "transcript"]
    assert said_before == texts  # the speech before the loss is in the journal, and after it


def test_pause_releases_the_microphone_and_resume_takes_it_again(isolated_env, tmp_path, free_port):
    mic = Microphone(tmp_path / "mic.fifo")
    config = alsa.write_config(
        tmp_path / "asound.conf", [alsa.fifo_capture("testmic", mic.path)], default="testmic"
    )
    events = Events(f"tcp://127.0.0.1:{free_port}")
    daemon = _start(isolated_env, config, tmp_path / "journal.jsonl", free_port)
    try:
        daemon.wait_ready()
        mic.live.set()
        assert events.until(lambda e: "ok" in _device_states(e), 30)
        pid = daemon.proc.pid
        assert _fds_on(pid, mic.path) == 1  # the open PortAudio stream reads the pipe
        reply = daemon.control.request("pause")
        assert reply["state"] == "paused"
        status = daemon.control.request("status")
        assert status["device_state"] == "closed" and status["device"] == "testmic"
        assert isinstance(status["overflows"], int)  # counted for a microphone, reported always
        assert _fds_on(pid, mic.path) == 0  # the stream is closed: the device is released
        time.sleep(1.0)
        assert daemon.control.request("resume")["state"] == "ready"
        mic.say(np.concatenate([silence(0.5), synthesize(SENTENCES[9]), silence(1.5)]))
        assert events.until(lambda e: len(e.of("transcript")) == 1, 60), events
        assert _fds_on(pid, mic.path) == 1
        assert daemon.control.request("status")["device_state"] == "ok"
    finally:
        daemon.stop()
        events.close()
        mic.close()
    # the sentence after the resume is heard whole; not "exercise" itself, which tiny.en hears as
    # "rec-rester size" on some alignments of a live stream's blocks (the audio is intact)
    text = _transcripts(events)[0]
    assert "doctor" in text and "good sleep" in text and "important" in text, text
    assert _device_states(events) == ["ok", "closed", "ok"]
    # paused time is stream time: the sentence after the pause sits after it
    assert events.of("transcript")[0]["stream_start"] > 1.0


@pytest.mark.parametrize("when", ["mid-sentence", "device-lost"])
def test_sigterm_stops_within_the_service_managers_limit_keeping_the_last_sentence(
    isolated_env, tmp_path, free_port, when
):
    """What `systemctl stop` / launchd do: SIGTERM, then SIGKILL after the unit's stop timeout.
    The daemon is done well before it, with the sentence under way transcribed -- also while its
    device is lost and the driver still holds a stuck read (the close is abandoned, not waited on)."""
    mic = Microphone(tmp_path / "mic.fifo")
    config = alsa.write_config(
        tmp_path / "asound.conf", [alsa.fifo_capture("testmic", mic.path)], default="testmic"
    )
    journal = tmp_path / "journal.jsonl"
    events = Events(f"tcp://127.0.0.1:{free_port}")
    daemon = _start(isolated_env, config, journal, free_port)
    try:
        daemon.wait_ready()
        mic.say(np.concatenate([silence(0.5), synthesize(SENTENCES[7])]))  # no pause after it
        mic.live.set()
        assert events.until(lambda e: any(v["event"] == "speech_start" for v in e.of("vad")), 30)
        if when == "device-lost":
            mic.live.clear()  # the driver blocks in read: a stall, then a close that hangs
            assert events.until(lambda e: "lost" in _device_states(e), 30), events
        else:
            time.sleep(1.0)  # still speaking
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(SERVICE_STOP_TIMEOUT_S)
        took = time.monotonic() - started
    finally:
        daemon.stop()
        events.close()
        mic.close()
    assert daemon.proc.returncode == 0
    assert took < SERVICE_STOP_TIMEOUT_S / 2, took
    texts = [
        json.loads(line)["event"]["text"].lower()
        for line in journal.read_text().splitlines()
        if json.loads(line)["topic"] == "transcript"
    ]
    assert len(texts) == 1 and "beach" in texts[0], texts

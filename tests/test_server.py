"""The daemon in-process with a deterministic engine: the data flow, not the recognition.

Real sockets, real segmenter, real journal; only the engine is the small FakeEngine, so these
check what the daemon itself does with utterances (ids, times, failures, pause) quickly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import zmq

from dictated.audio.format import SAMPLE_RATE, int16_to_float32
from dictated.audio.source import AudioSource, Block
from dictated.clients.control import ControlClient, DaemonUnavailable
from dictated.config import Config, JournalOptions, TransportOptions
from dictated.protocol import CONTROL_SOCKET, default_endpoint
from dictated.server import Daemon
from dictated.speculation import SpeculationOptions
from tests.fake_engine import FakeEngine, fingerprint
from tests.speech import SENTENCES, compose

SR = SAMPLE_RATE
NO_SPECULATION = SpeculationOptions(mode="off", partials="off")


class GatedSource(AudioSource):
    """Blocks of a signal, paced by the test: it stops before each of `gates` (sample offsets)
    until the test lets it go on, so commands can be given at known points of the audio."""

    description = "gated test signal"

    def __init__(self, pcm: np.ndarray, gates: tuple[int, ...] = (), pace_s: float = 0.0):
        """`pace_s`: wait this long after each 100 ms block (0: as fast as the loop goes)."""
        self.pcm = pcm
        self.pace_s = pace_s
        self.gates = [0, *sorted(gates)]  # the first: until the test is listening
        self.waiting = threading.Event()  # set while held at a gate
        self.go = threading.Event()
        self.held_at: int | None = None  # the gate it is held at now
        self._closed = False

    def wait_at(self, gate: int, timeout_s: float = 30.0) -> bool:
        """Until the source is held at `gate` (`waiting` alone cannot tell one gate from the
        next: right after `go` it is still set from the gate being left)."""
        deadline = time.monotonic() + timeout_s
        while self.held_at != gate:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def blocks(self):
        block = SR // 10
        for offset in range(0, len(self.pcm), block):
            if self.gates and offset >= self.gates[0]:
                self.held_at = self.gates.pop(0)
                self.waiting.set()
                while not self.go.is_set() and not self._closed:
                    await asyncio.sleep(0.01)
                self.go.clear()
                self.waiting.clear()
                self.held_at = None
            if self._closed:
                return
            yield Block(self.pcm[offset : offset + block], time.time())
            await asyncio.sleep(self.pace_s)

    async def aclose(self) -> None:
        self._closed = True


class InProcess:
    """Runs a Daemon on its own loop in a thread, with a SUB socket on an extra tcp endpoint."""

    def __init__(
        self,
        env,
        port,
        source: GatedSource,
        engine: FakeEngine,
        tmp_path: Path,
        speculation: SpeculationOptions = NO_SPECULATION,
    ):
        """`speculation`: off unless a test is about it (a speculative decode is an engine call
        and its text that of a shorter stretch of audio)."""
        self.journal_path = tmp_path / "journal.jsonl"
        config = Config(
            transport=TransportOptions(pub=(f"tcp://127.0.0.1:{port}",), linger_s=0.5),
            journal=JournalOptions(path=self.journal_path),
            speculation=speculation,
        )
        self.engine = engine
        self.source = source
        self.daemon = Daemon(config, source=source, engine_factory=lambda: engine)
        self.control = ControlClient(
            default_endpoint(CONTROL_SOCKET, env["DICTATED_RUNTIME_DIR"]), timeout_s=10
        )
        self._context = zmq.Context()
        self.sub = self._context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(f"tcp://127.0.0.1:{port}")
        self.events: list[tuple[str, dict]] = []
        self.exit_code: int | None = None
        self._thread = threading.Thread(
            target=self._run, name="daemon", daemon=True
        )  # a failed test must not hang exit

    def _run(self) -> None:
        self.exit_code = asyncio.run(self.daemon.serve())

    def start(self, go: bool = True) -> InProcess:
        """Start, and let the audio flow once the subscriber is surely connected (a PUB socket
        drops what it sends before a subscription arrives); `go=False`: the test sets
        `source.go` itself, once its own clients are subscribed too."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._ready():
            assert time.monotonic() < deadline, "the daemon did not get ready"
            time.sleep(0.05)
        time.sleep(0.3)
        if go:
            self.source.go.set()
        return self

    def _ready(self) -> bool:
        try:
            return self.control.request("status")["state"] in ("ready", "paused")
        except DaemonUnavailable:
            return False

    def receive(self, until=lambda events: False, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(self.events):
            if self.sub.poll(100):
                topic, body = self.sub.recv_multipart()
                self.events.append((topic.decode(), json.loads(body)))
            elif not self._thread.is_alive():
                return

    def finish(self, timeout_s: float = 60) -> int:
        self.receive(timeout_s=timeout_s)
        self._thread.join(timeout_s)
        self.sub.close()
        self._context.term()
        assert self.exit_code is not None, "the daemon did not finish"
        return self.exit_code

    def of(self, topic: str) -> list[dict]:
        return [body for t, body in self.events if t == topic]


def test_a_failed_utterance_is_an_error_event_with_its_place_and_audio(
    isolated_env, free_port, tmp_path
):
    signal = compose(SENTENCES[:3], 1.5, lead_s=1.0)
    source = GatedSource(signal.pcm)
    run = InProcess(isolated_env, free_port, source, FakeEngine(fail_calls=(2,)), tmp_path)
    assert run.start().finish() == 0
    transcripts, errors = run.of("transcript"), run.of("error")
    assert len(transcripts) == 2 and len(errors) == 1
    (error,) = errors
    assert error["fatal"] is False and "fake failure on call 2" in error["message"]
    # the error names the second utterance and says where it was in the file
    ids = [body["id"] for body in run.of("vad") if body["event"] == "speech_start"]
    assert [transcripts[0]["id"], error["id"], transcripts[1]["id"]] == ids
    assert abs(error["stream_start"] - signal.spoken[1].start_sample / SR) < 0.1
    assert error["stream_start"] < error["stream_end"] and error["start"] <= error["end"]
    # its audio is kept, exactly what the engine was given
    saved, rate = soundfile.read(error["audio_path"], dtype="int16")
    assert rate == SR and len(saved) / SR == pytest.approx(error["audio_s"], abs=1e-3)
    assert run.engine.threads == {"inference_0"}
    # the other two were transcribed from their own audio, and are journaled with the error
    assert transcripts[0]["text"].startswith(f"{transcripts[0]['audio_s']:.3f}s")
    journal = [json.loads(line) for line in run.journal_path.read_text().splitlines()]
    assert [j["event"]["seq"] for j in journal] == sorted(
        body["seq"] for body in transcripts + errors
    )
    statuses = run.of("status")
    assert statuses[-1]["state"] == "stopped" and statuses[-1]["errors"] == 1
    assert statuses[-1]["utterances"] == 3


def test_pause_skips_audio_yet_stream_times_stay_source_times(isolated_env, free_port, tmp_path):
    """Paused audio is not transcribed, but it is part of the source's timeline: the utterance
    after resume is placed where it really is, and ids keep counting."""
    signal = compose(SENTENCES[:3], 2.0, lead_s=1.0)
    spoken = signal.spoken
    gates = [spoken[0].end_sample + SR, spoken[1].end_sample + SR]  # in the silence after each
    source = GatedSource(signal.pcm, gates)
    run = InProcess(isolated_env, free_port, source, FakeEngine(), tmp_path).start()

    assert source.wait_at(gates[0])
    run.receive(lambda events: any(t == "transcript" for t, _ in events))
    assert run.control.request("pause")["state"] == "paused"
    source.go.set()  # the second sentence is read while paused
    assert source.wait_at(gates[1])
    assert run.control.request("status")["state"] == "paused"
    assert run.control.request("resume")["state"] == "ready"
    source.go.set()
    assert run.finish() == 0

    transcripts = run.of("transcript")
    assert len(transcripts) == 2
    for t, truth in zip(transcripts, (spoken[0], spoken[2]), strict=True):
        assert abs(t["stream_start"] - truth.start_sample / SR) < 0.1, t
    n = [int(t["id"].rsplit("-", 1)[1]) for t in transcripts]
    assert n == [1, 2]
    assert [body["state"] for body in run.of("status")] == ["paused", "ready", "stopped"]


def test_transcripts_are_the_utterance_audio_at_their_stream_place(
    isolated_env, free_port, tmp_path
):
    """Stream times and audio_s locate each transcript's audio in the file: the engine's
    fingerprint of that stretch of the file is the transcript's text."""
    signal = compose(SENTENCES[:2], 1.5, lead_s=1.0)
    source = GatedSource(signal.pcm)
    run = InProcess(isolated_env, free_port, source, FakeEngine(), tmp_path).start()
    assert run.finish() == 0
    transcripts = run.of("transcript")
    assert len(transcripts) == 2
    speech_starts = {b["id"]: b for b in run.of("vad") if b["event"] == "speech_start"}
    for t in transcripts:
        assert speech_starts[t["id"]]["stream_time"] == t["stream_start"]
        # the utterance begins one pre-roll (400 ms, whole 30 ms frames) before its onset, or
        # at the file's start
        begin = max(0, round(t["stream_start"] * SR) - 14 * 480)
        end = begin + round(t["audio_s"] * SR)
        assert t["text"] == fingerprint(int16_to_float32(signal.pcm[begin:end]))


def test_deeply_nested_json_on_the_control_socket_is_a_malformed_request(
    isolated_env, free_port, tmp_path, caplog
):
    """Python's JSON parser gives up on deep nesting with a RecursionError; that is bad input,
    answered like any other (no 'internal error', no traceback in the log)."""
    signal = compose(SENTENCES[:1], 1.0, lead_s=0.5)
    run = InProcess(isolated_env, free_port, GatedSource(signal.pcm), FakeEngine(), tmp_path)
    run.start()
    context = zmq.Context.instance()
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 10_000)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(run.control.endpoint)
    nested = b"[" * 30_000 + b"]" * 30_000  # deep enough, and under the 64 KiB request bound
    for payload in (nested, b'{"v": 1, "cmd": "history", "topics": ' + nested + b"}"):
        req.send(payload)
        reply = json.loads(req.recv())
        assert reply["ok"] is False and "nested too deeply" in reply["error"]
    req.close()
    assert run.control.request("status")["state"] == "ready"
    assert run.finish() == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]

"""The real daemon process on `--engine remote` against a real vLLM server, with real faults.

Each fault is set on tests/engines/remote/fault_proxy.py (or the server itself is killed) between two
utterances fed through stdin; every utterance must end as a transcript or as an error event naming
it with its audio saved, and the daemon must keep going and recover.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import zmq

from dictated.engines.remote.options import API_KEY_ENV
from tests.daemon_proc import DaemonProcess, start_daemon
from tests.engines.remote.fault_proxy import Fault, FaultProxy
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.vllm
API_KEY = "sk-never-in-the-log-4711"


def utterance_bytes(i: int) -> bytes:
    pcm = np.concatenate([silence(0.5), synthesize(SENTENCES[i]), silence(1.5)])
    return pcm.astype("<i2").tobytes()


def journal(daemon: DaemonProcess) -> list[tuple[str, dict]]:
    events = daemon.control.request("history", since=0)["events"]
    return [(e["topic"], e["event"]) for e in events]


def say_and_wait(daemon: DaemonProcess, i: int, timeout_s: float = 90) -> tuple[str, dict]:
    """Feed utterance `i`; return the transcript or error event it ends as."""
    before = len(journal(daemon))
    daemon.feed(utterance_bytes(i))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = journal(daemon)
        if len(events) > before:
            assert len(events) == before + 1, events[before:]
            return events[-1]
        assert daemon.proc.poll() is None, daemon.finish()
        time.sleep(0.1)
    raise TimeoutError(f"utterance {i} produced no event")


def remote_daemon(
    env: dict, tmp_path: Path, *urls: str, timeout_s: float = 15, stream: bool = False
) -> DaemonProcess:
    """A daemon on stdin; `timeout_s` generous, as a loaded 2-core CI box can be slow."""
    config = tmp_path / "remote.toml"
    config.write_text(
        '[engine]\nname = "remote"\n[engine.remote]\nmodel = "tiny-whisper"\n'
        f"timeout_s = {timeout_s}\nbackoff_s = 0.2\nmax_backoff_s = 0.5\n"
        f"stream = {'true' if stream else 'false'}\n"
    )
    flags = [arg for url in urls for arg in ("--remote-url", url)]
    daemon = start_daemon(
        {**env, API_KEY_ENV: API_KEY},
        "--config", str(config), "--source", "-", *flags, "--linger", "0", "--log-level", "debug",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    daemon.wait_ready()
    return daemon


def finish(daemon: DaemonProcess) -> str:
    daemon.proc.stdin.close()
    stderr = daemon.finish()
    assert daemon.proc.returncode == 0, stderr
    assert API_KEY not in stderr and "Traceback" not in stderr, stderr
    return stderr


def assert_failed_and_kept(event: tuple[str, dict], run_id: str, n: int, reason: str) -> None:
    topic, body = event
    assert topic == "error", body
    assert body["id"] == f"{run_id}-{n}" and reason in body["message"], body
    audio, rate = soundfile.read(body["audio_path"], dtype="int16")
    assert rate == 16000 and len(audio) / rate == pytest.approx(body["audio_s"], abs=0.05)


def test_faults_become_error_events_with_audio_and_the_daemon_recovers(
    vllm_whisper, isolated_env, tmp_path
):
    with FaultProxy(vllm_whisper.port) as proxy:
        daemon = remote_daemon(isolated_env, tmp_path, proxy.url, timeout_s=10)
        try:
            status = daemon.control.request("status")
            assert status["engine"] == "remote"
            assert status["servers"][0]["url"] == proxy.url and status["servers"][0]["healthy"]
            assert proxy.seen[0].headers["authorization"] == f"Bearer {API_KEY}"  # the warm-up
            run_id = None
            faults = [
                (Fault.passthrough(), None),
                (Fault.http(500), "HTTP 500"),
                (Fault.http(429, retry_after="1"), "retry after 1 s"),
                (Fault.slow(120), "timed out after 10 s"),
                (Fault.drop(), "closed the connection"),
                (Fault.passthrough(), None),
            ]
            failed = []
            for n, (fault, reason) in enumerate(faults, start=1):
                proxy.set(fault)
                health = daemon.control.request("status")["servers"][0]
                time.sleep(health["retry_in_s"] or 0)  # the previous fault's time out is over
                topic, body = say_and_wait(daemon, n - 1)
                run_id = run_id or body["id"].rsplit("-", 1)[0]
                if reason is None:
                    assert topic == "transcript", body
                    assert body["text"] and body["engine"] == "remote"
                else:
                    assert_failed_and_kept((topic, body), run_id, n, reason)
                    failed.append(body)
            servers = daemon.control.request("status")["servers"]
            assert servers[0]["healthy"] and servers[0]["failed"] == 4
        finally:
            proxy.set(Fault.passthrough())
            stderr = finish(daemon)
    assert "failed: HTTP 500" in stderr  # the log says what happened, without the key
    # nothing lost: the kept audio of each failed utterance transcribes once the server is back
    for body in failed:
        assert vllm_whisper.transcribe(Path(body["audio_path"]))


def test_the_other_url_takes_over_when_one_of_two_fails(vllm_whisper, isolated_env, tmp_path):
    with FaultProxy(vllm_whisper.port) as bad, FaultProxy(vllm_whisper.port) as good:
        daemon = remote_daemon(isolated_env, tmp_path, bad.url, good.url)
        try:
            bad.set(Fault.drop())
            events = [say_and_wait(daemon, i) for i in range(3)]
            assert [topic for topic, _ in events] == ["transcript"] * 3, events
            servers = {s["url"]: s for s in daemon.control.request("status")["servers"]}
            assert servers[good.url]["healthy"] and servers[good.url]["succeeded"] >= 3
            assert bad.count("drop") >= 1 and not servers[bad.url]["healthy"]
        finally:
            finish(daemon)


def test_a_server_killed_mid_session_then_restarted(vllm_whisper, isolated_env, tmp_path):
    """The real server, SIGKILLed while the daemon runs; last in this file: it restarts vLLM."""
    daemon = remote_daemon(isolated_env, tmp_path, vllm_whisper.base_url)
    try:
        topic, first = say_and_wait(daemon, 0)
        assert topic == "transcript"
        run_id = first["id"].rsplit("-", 1)[0]
        daemon.feed(utterance_bytes(1))
        time.sleep(0.3)  # the utterance is being segmented or already on the wire
        os.killpg(vllm_whisper.proc.pid, signal.SIGKILL)
        vllm_whisper.stop()
        deadline = time.monotonic() + 30
        while len(journal(daemon)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        topic, body = journal(daemon)[-1]
        assert topic in ("error", "transcript")  # it may have been answered just before the kill
        if topic == "error":
            assert body["id"] == f"{run_id}-2" and Path(body["audio_path"]).is_file()
        # refused, or sat out after the previous failure: either way the server is named
        assert_failed_and_kept(say_and_wait(daemon, 2), run_id, 3, vllm_whisper.base_url)
        vllm_whisper.start()
        time.sleep(0.6)  # past the longest backoff
        topic, body = say_and_wait(daemon, 3)
        assert topic == "transcript" and body["id"] == f"{run_id}-4" and body["text"]
        assert daemon.control.request("status")["servers"][0]["healthy"]
    finally:
        if not vllm_whisper.running:
            vllm_whisper.start()
        finish(daemon)


def test_streamed_answers_become_partials_before_their_final(vllm_whisper, isolated_env, tmp_path):
    """`stream = true`: vLLM's SSE deltas are published as `partial` events of the utterance,
    growing, each a prefix of its transcript's text, all before it (at most one per
    `partial_interval_ms`: test_stream_partials.py)."""
    daemon = remote_daemon(isolated_env, tmp_path, vllm_whisper.base_url, stream=True)
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"partial")
    sub.setsockopt(zmq.SUBSCRIBE, b"transcript")
    sub.connect(daemon.events_endpoint)
    try:
        time.sleep(0.5)  # the subscription reaches the PUB socket before anything is said
        daemon.feed(utterance_bytes(0))
        events: list[tuple[str, dict]] = []
        deadline = time.monotonic() + 120
        while not any(t == "transcript" for t, _ in events) and time.monotonic() < deadline:
            if sub.poll(200):
                topic, body = sub.recv_multipart()
                events.append((topic.decode(), json.loads(body)))
        daemon.feed(utterance_bytes(1))  # and nothing of the first comes after its final
        deadline = time.monotonic() + 120
        while sum(t == "transcript" for t, _ in events) < 2 and time.monotonic() < deadline:
            if sub.poll(200):
                topic, body = sub.recv_multipart()
                events.append((topic.decode(), json.loads(body)))
        finish(daemon)
    finally:
        context.destroy(linger=0)
        daemon.stop()
    finals = [b for t, b in events if t == "transcript"]
    assert len(finals) == 2, events
    for final in finals:
        mine = [(t, b) for t, b in events if b["id"] == final["id"]]
        partials = [b["text"] for t, b in mine if t == "partial"]
        assert partials, f"no partial for {final['id']}: {events}"
        assert mine[-1] == ("transcript", final)  # none after the final
        assert all(len(a) <= len(b) for a, b in zip(partials, partials[1:], strict=False)), partials
        assert all(final["text"].startswith(p) for p in partials), (partials, final)

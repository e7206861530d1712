"""Run the real daemon as a separate process, the way users run it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dictated.clients.control import ControlClient, DaemonUnavailable
from dictated.protocol import CONTROL_SOCKET, EVENTS_SOCKET, default_endpoint
from tests.speech import silence, synthesize

REPO = Path(__file__).resolve().parent.parent
#: the fields every `transcript` event carries (the README's protocol table)
TRANSCRIPT_SCHEMA = (
    "v",
    "seq",
    "id",
    "text",
    "language",
    "start",
    "end",
    "speech_start",
    "stream_start",
    "stream_end",
    "audio_s",
    "latency_ms",
    "engine",
    "truncated",
    "reason",
)


def daemon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dictated", "run", *args]


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen, env: dict[str, str]):
        self.proc = proc
        self.env = env
        runtime = env["DICTATED_RUNTIME_DIR"]
        self.control_endpoint = default_endpoint(CONTROL_SOCKET, runtime)
        self.events_endpoint = default_endpoint(EVENTS_SOCKET, runtime)
        self.control = ControlClient(self.control_endpoint, timeout_s=10)

    def wait_ready(self, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.finish()}")
            try:
                status = ControlClient(self.control_endpoint, timeout_s=0.5).request("status")
                if status["state"] in ("ready", "paused"):
                    return status
            except DaemonUnavailable:
                pass
            time.sleep(0.1)
        raise TimeoutError("daemon did not become ready")

    def feed(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 60.0) -> str:
        """End of input (communicate closes stdin), wait for exit; returns stderr."""
        if self.proc.stdin is not None and self.proc.stdin.closed:
            self.proc.stdin = None  # already ended by the caller
        _, stderr = self.proc.communicate(timeout=timeout_s)
        return stderr.decode(errors="replace")

    def stop(self) -> str:
        """Interrupt (like Ctrl-C) if still running, and reap; returns its stderr (the log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.finish(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
            return (stderr or b"").decode(errors="replace")


def start_daemon(env: dict[str, str], *args: str, stdin=subprocess.DEVNULL) -> DaemonProcess:
    proc = subprocess.Popen(
        daemon_command(*args),
        env=env,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    return DaemonProcess(proc, env)


def start_stdin_daemon(env: dict[str, str], *args: str) -> DaemonProcess:
    """The embedded engine reading raw audio from a pipe that stays open until stopped."""
    return start_daemon(
        env, "--source", "-", "--engine", "whisper", "--linger", "0", *args, stdin=subprocess.PIPE
    )


def utterance_bytes(text: str) -> bytes:
    """One spoken sentence between silences, as raw s16le for a stdin daemon."""
    return np.concatenate([silence(0.5), synthesize(text), silence(1.5)]).astype("<i2").tobytes()


def feed(daemon: DaemonProcess, text: str) -> None:
    daemon.feed(utterance_bytes(text))


def wait_for_transcripts(daemon: DaemonProcess, count: int, timeout_s: float = 60) -> list[dict]:
    """The journaled transcripts, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = daemon.control.request("history", since=0)["events"]
        transcripts = [e["event"] for e in events if e["topic"] == "transcript"]
        if len(transcripts) >= count:
            return transcripts
        time.sleep(0.2)
    raise TimeoutError(f"expected {count} transcripts")

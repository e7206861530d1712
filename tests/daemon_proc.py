"""Run the real daemon as a separate process, the way users run it."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from dictated.clients.control import ControlClient, DaemonUnavailable
from dictated.protocol import CONTROL_SOCKET, EVENTS_SOCKET, default_endpoint


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen, env: dict[str, str]):
        self.proc = proc
        self.env = env
        runtime = env["DICTATED_RUNTIME_DIR"]
        self.control_endpoint = default_endpoint(CONTROL_SOCKET, runtime)
        self.events_endpoint = default_endpoint(EVENTS_SOCKET, runtime)
        self.control = ControlClient(self.control_endpoint, timeout_s=10)

    def wait_ready(self, timeout_s: float = 60.0, state: str = "ready") -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            try:
                status = ControlClient(self.control_endpoint, timeout_s=0.5).request("status")
                if status["state"] in (state, "paused"):
                    return status
            except DaemonUnavailable:
                pass
            time.sleep(0.1)
        raise TimeoutError("daemon did not become ready")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""


def daemon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dictated", "run", *args]


@contextmanager
def running_daemon(env: dict[str, str], *args: str, stdin=None):
    proc = subprocess.Popen(
        daemon_command(*args),
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    daemon = DaemonProcess(proc, env)
    try:
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()

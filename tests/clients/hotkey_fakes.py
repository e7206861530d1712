"""A fake daemon for the hotkey and typing clients: real ZeroMQ sockets, no audio or engine.

`FakeControl` is a REP socket that records requests and answers `status`, `ptt` and `history` as
issue 18's contract says (mode, held, armed, listening); `FakeEvents` a PUB socket publishing the
events a test writes, with consecutive `seq`. The clients are tested against them without a
daemon; the end-to-end tests use the real one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import zmq

from dictated.protocol import CONTROL_SOCKET, EVENTS_SOCKET, encode_event, make_event


class FakeControl:
    def __init__(self, endpoint: str, commands: tuple[str, ...] = ("status", "ptt", "history")):
        self.endpoint = endpoint
        self.commands = commands  # what it knows; others get the daemon's unknown-command error
        self.requests: list[dict] = []
        self.held = False
        self.ptt_actions = ("press", "release", "toggle")  # an older daemon: no "toggle"
        self.effects: list[str] = []  # what each accepted `ptt` did: press or release
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            request = json.loads(self._socket.recv())
            self.requests.append(request)
            if request.get("cmd") not in self.commands:
                error = f"unknown command {request.get('cmd')!r}; commands: status"
                self._socket.send(json.dumps({"v": 1, "ok": False, "error": error}).encode())
                continue
            if request.get("cmd") == "ptt":
                action = request.get("action")
                if action == "toggle" and "toggle" in self.ptt_actions:
                    action = "release" if self.held else "press"
                if action not in ("press", "release"):
                    error = f"'action' must be one of {self.ptt_actions}, got {action!r}"
                    self._socket.send(json.dumps({"v": 1, "ok": False, "error": error}).encode())
                    continue
                self.held = action == "press"
                self.effects.append(action)
            state = {"mode": "push-to-talk", "held": self.held, "armed": True, "listening": True}
            if request.get("cmd") == "history":
                state = {"events": [], "last_seq": request.get("since", 0)}
            self._socket.send(json.dumps({"v": 1, "ok": True, **state}).encode())

    def ptt(self) -> list[str]:
        """What the `ptt` requests did so far, in order: press or release (a toggle resolved)."""
        return list(self.effects)

    def sent(self) -> list[str]:
        """The `ptt` actions as they were sent."""
        return [r["action"] for r in self.requests if r.get("cmd") == "ptt"]

    def wait_for(self, count: int, timeout_s: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while len(self.ptt()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} ptt requests, got {self.requests}")
            time.sleep(0.02)
        return self.ptt()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close(0)
        self._context.term()


class FakeEvents:
    """A PUB socket; `publish(topic, body)` sends the next event (seq 1, 2, ...)."""

    def __init__(self, endpoint: str):
        self.seq = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)

    def publish(self, topic: str, **body) -> None:
        self.seq += 1
        self._socket.send_multipart(encode_event(make_event(topic, self.seq, body)))

    def close(self) -> None:
        self._socket.close(0)
        self._context.term()


@contextmanager
def fake_daemon(runtime_dir: str) -> Iterator[tuple[FakeControl, FakeEvents]]:
    """Both sockets where clients look for the daemon (DICTATED_RUNTIME_DIR)."""
    control = FakeControl(f"ipc://{runtime_dir}/{CONTROL_SOCKET}")
    events = FakeEvents(f"ipc://{runtime_dir}/{EVENTS_SOCKET}")
    try:
        yield control, events
    finally:
        events.close()
        control.close()


def publish_until(events: FakeEvents, done, what: str, timeout_s: float = 30, **state) -> None:
    """Publish a status event with `state` until `done()`: the client is subscribed from then on
    (ZeroMQ drops what a PUB sends before a subscription arrives)."""
    deadline = time.monotonic() + timeout_s
    while True:
        events.publish("status", state="ready", **state)
        time.sleep(0.1)
        if done():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the client never showed {what}")

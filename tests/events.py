"""Independent SUB sockets that record every event a daemon publishes, for assertions.

A real subscriber the tests did not write the daemon for: what it records is what any client gets.
"""

from __future__ import annotations

import json
import threading
import time

import zmq


class Events:
    """Connects to `endpoint` (before the daemon binds is fine: ZeroMQ retries) and records
    (topic, body) pairs as `until` polls."""

    def __init__(self, endpoint: str):
        self._context = zmq.Context()
        self.sub = self._context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(endpoint)
        self.got: list[tuple[str, dict]] = []

    def until(self, predicate, timeout_s: float = 90) -> bool:
        """Record events until `predicate(self)` holds; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sub.poll(100):
                topic, body = self.sub.recv_multipart()
                self.got.append((topic.decode(), json.loads(body)))
            if predicate(self):
                return True
        return False

    def __repr__(self) -> str:  # what an assertion shows: the events in short
        keys = ("state", "device_state", "detail", "event", "id", "text", "message")
        return "\n".join(f"{t}: { ({k: b[k] for k in keys if k in b}) }" for t, b in self.got)

    def of(self, topic: str) -> list[dict]:
        return [body for t, body in self.got if t == topic]

    def close(self) -> None:
        self.sub.close()
        self._context.term()


class TimedEvents:
    """A SUB socket read on its own thread: every event with the wall time it arrived, taken as
    it is read (latency figures do not depend on when a test looks)."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = (b"",)):
        self._context = zmq.Context()
        self._sub = self._context.socket(zmq.SUB)
        for topic in topics:
            self._sub.setsockopt(zmq.SUBSCRIBE, topic)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.connect(endpoint)
        self.events: list[tuple[str, dict, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sub.poll(50):
                topic, body = self._sub.recv_multipart()
                self.events.append((topic.decode(), json.loads(body), time.time()))

    def of(self, topic: str) -> list[tuple[dict, float]]:
        return [(b, at) for t, b, at in list(self.events) if t == topic]

    def wait(self, topic: str, count: int, timeout_s: float = 60) -> list[tuple[dict, float]]:
        """The `topic` events once there are at least `count` (AssertionError after timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while len(self.of(topic)) < count:
            assert time.monotonic() < deadline, f"expected {count} {topic} events: {self.events}"
            time.sleep(0.002)
        return self.of(topic)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sub.close()
        self._context.term()

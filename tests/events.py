"""An independent SUB socket that records every event a daemon publishes, for assertions.

A real subscriber the tests did not write the daemon for: what it records is what any client gets.
"""

from __future__ import annotations

import json
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

"""Follow the daemon's events: optional history replay, then the live stream, with no gap or duplicate.

ZeroMQ drops what a PUB socket sends before a subscriber's subscription arrives, and `seq` counts
every topic. So: subscribe first, fetch history since the client's last seq, then follow live
events; whenever a live event's seq skips past the last one seen, ask history for the
difference (live-only topics such as `vad` are not in history; transcripts and errors are).
Duplicates are impossible because only events with seq above the last delivered pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zmq

from dictated.protocol import (
    EVENTS_SOCKET,
    Event,
    ProtocolError,
    decode_event,
    default_endpoint,
    event_from_body,
)

from .control import ControlClient


class Subscription:
    def __init__(
        self,
        events_endpoint: str | None = None,
        control: ControlClient | None = None,
        topics: Iterable[str] = ("",),
        since: int | None = None,
        context: zmq.Context | None = None,
        page_size: int | None = None,
    ):
        self._context = context or zmq.Context.instance()
        self.events_endpoint = events_endpoint or default_endpoint(EVENTS_SOCKET)
        self.control = control
        self.last_seq = since  # None: live only
        self.page_size = page_size  # None: the daemon's maximum
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        self.socket.connect(self.events_endpoint)
        self._backlog: list[Event] = []
        if since is not None:
            self._backlog = self._history(since)

    def _history(self, since: int) -> list[Event]:
        """Every journaled event after `since`, page by page (the daemon caps a reply's size)."""
        if self.control is None:
            raise ValueError("history replay needs a control client")
        events: list[Event] = []
        while True:
            limit = {"limit": self.page_size} if self.page_size else {}
            reply = self.control.request("history", since=since, **limit)
            page = [event_from_body(item["topic"], item["event"]) for item in reply["events"]]
            events += page
            if not reply.get("more") or not page:
                return events
            since = page[-1].seq

    def _deliver(self, event: Event) -> Iterator[Event]:
        if self.last_seq is not None and event.seq <= self.last_seq:
            return  # already delivered via history
        if self.last_seq is not None and self.control is not None and event.seq > self.last_seq + 1:
            for missed in self._history(self.last_seq):  # fill the gap, this event included
                if missed.seq > self.last_seq:
                    self.last_seq = missed.seq
                    yield missed
            if event.seq <= self.last_seq:
                return
        self.last_seq = event.seq if self.last_seq is None else max(self.last_seq, event.seq)
        yield event

    def events(self, timeout_s: float | None = None) -> Iterator[Event]:
        """Yield events forever (or until no event arrives for `timeout_s`)."""
        for event in self._backlog:
            yield from self._deliver(event)
        self._backlog = []
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while True:
            if not poller.poll(None if timeout_s is None else int(timeout_s * 1000)):
                return
            try:
                event = decode_event(self.socket.recv_multipart())
            except ProtocolError:
                continue  # a future or foreign message: ignore, as the protocol asks
            yield from self._deliver(event)

    def close(self) -> None:
        self.socket.close(0)

"""Follow the daemon's events: optional history replay, then the live stream, with no gap or duplicate.

ZeroMQ drops what a PUB socket sends before a subscriber's subscription arrives, and `seq` counts
every topic. So: subscribe first, fetch history since the client's last seq, then follow live
events; whenever a live event's seq skips past the last one seen, ask history for the
difference (live-only topics such as `vad` are not in history; transcripts and errors are).
Duplicates are impossible because only events with seq above the last delivered pass.

A daemon that is not running yet, or restarts, is waited for: ZeroMQ reconnects the SUB socket by
itself, and a socket monitor tells us when it has, so history since the last seq is fetched at
once (what the new run published before the reconnect) rather than at the next live event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import zmq
from zmq.utils.monitor import recv_monitor_message

from dictated.protocol import (
    EVENTS_SOCKET,
    Event,
    ProtocolError,
    decode_event,
    default_endpoint,
    event_from_body,
)

from .control import CommandFailed, ControlClient, DaemonUnavailable

log = logging.getLogger(__name__)

_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class Subscription:
    def __init__(
        self,
        events_endpoint: str | None = None,
        control: ControlClient | None = None,
        topics: Iterable[str] = ("",),
        since: int | None = None,
        context: zmq.Context | None = None,
        page_size: int | None = None,
        wait: bool = False,
    ):
        """`wait`: a daemon that does not answer yet (or goes away) is waited for instead of raising
        DaemonUnavailable; the wait is logged once per outage."""
        self._context = context or zmq.Context.instance()
        self.events_endpoint = events_endpoint or default_endpoint(EVENTS_SOCKET)
        self.control = control
        self.topics = tuple(topics)
        self.last_seq = since  # None: live only
        self.page_size = page_size  # None: the daemon's maximum
        self.wait = wait
        self.connected = False
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        self._monitor = self.socket.get_monitor_socket(_LINK_EVENTS)
        self.socket.connect(self.events_endpoint)
        self._held: list[Event] = []  # live events waiting for a history fill that failed
        self._behind = False  # a history fill is owed (the daemon did not answer)
        self._backlog: list[Event] = []  # history fetched here, delivered by events()
        try:
            if since is not None:
                self._backlog = self._sync([])
            elif wait and control is not None:
                control.request("status")  # only to say at once that there is nothing to follow yet
        except DaemonUnavailable as exc:
            if not wait:
                self.close()
                raise
            log.warning("%s; waiting for it", exc)
        except BaseException:
            self.close()
            raise

    def _wanted(self, topic: str) -> bool:
        return any(topic.startswith(t) for t in self.topics)

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

    def _sync(self, live: list[Event]) -> list[Event]:
        """History since the last seq merged with `live` events, in seq order, each once.

        When the daemon does not answer and `wait` is set, the live events are held and the fill
        is retried on the next reconnect or live event, so nothing is skipped past.
        """
        held = self._held + live
        try:
            missed = self._history(self.last_seq or 0)
        except (DaemonUnavailable, CommandFailed) as exc:
            if not self.wait:
                raise
            if not self._behind:
                log.warning("%s; waiting for it", exc)
            self._held, self._behind = held, True
            return []
        self._held, self._behind = [], False
        out: list[Event] = []
        for event in sorted(missed + held, key=lambda e: e.seq):
            if self.last_seq is not None and event.seq <= self.last_seq:
                continue
            self.last_seq = event.seq  # history's other topics are accounted for, not delivered
            if self._wanted(event.topic):
                out.append(event)
        return out

    def _deliver(self, event: Event) -> Iterator[Event]:
        if self.last_seq is not None and event.seq <= self.last_seq:
            return  # already delivered via history
        gap = self.last_seq is not None and (event.seq > self.last_seq + 1 or self._behind)
        if gap and self.control is not None:
            yield from self._sync([event])  # fill the gap, this event included
            return
        self.last_seq = event.seq
        yield event

    def _on_link(self) -> Iterator[Event]:
        message = recv_monitor_message(self._monitor)
        if message["event"] == zmq.EVENT_DISCONNECTED:
            if self.connected:
                log.warning("the daemon went away (%s); waiting for it", self.events_endpoint)
            self.connected = False
            return
        self.connected = True
        log.info("connected to the daemon (%s)", self.events_endpoint)
        if self.control is not None and (self.last_seq is not None or self._behind):
            yield from self._sync([])  # what a restarted daemon published before we reconnected

    def events(self, timeout_s: float | None = None) -> Iterator[Event]:
        """Yield events forever (or until no event arrives for `timeout_s`)."""
        backlog, self._backlog = self._backlog, []
        yield from backlog
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(None if timeout_s is None else int(timeout_s * 1000)))
            if not ready:
                return
            if self._monitor in ready:
                yield from self._on_link()
            if self.socket not in ready:
                continue
            try:
                event = decode_event(self.socket.recv_multipart())
            except ProtocolError:
                continue  # a future or foreign message: ignore, as the protocol asks
            yield from self._deliver(event)

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(0)
        self.socket.close(0)

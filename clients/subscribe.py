"""Follow the daemon's events: optional history replay, then the live stream, with no gap or duplicate.

ZeroMQ drops what a PUB socket sends before a subscriber's subscription arrives, and `seq` counts
every topic. So the socket subscribes to every topic (the live-only ones are a few small events
per utterance) and follows `seq` across all of them: a jump in `seq` is then a real loss, not
an event of a topic the caller did not ask for. Only journaled topics can be recovered; a loss
is filled by asking `history` for the journaled topics the caller wants since the last seq seen
(and nothing is asked when it wants none). Only the topics asked for are delivered; duplicates
are impossible because only events with seq above the last one seen pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zmq

from dictated.protocol import (
    EVENTS_SOCKET,
    JOURNALED_TOPICS,
    Event,
    ProtocolError,
    decode_event,
    default_endpoint,
    event_from_body,
    topic_matches,
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
        """`topics`: ZeroMQ-style prefixes ("" is everything); `since`: replay the journal from
        this seq first (needs `control`); None follows live events only."""
        self._context = context or zmq.Context.instance()
        self.events_endpoint = events_endpoint or default_endpoint(EVENTS_SOCKET)
        self.control = control
        self.topics = tuple(topics)
        #: the journaled topics asked for: what history can recover for this subscriber
        self.history_topics = [t for t in JOURNALED_TOPICS if topic_matches(t, self.topics)]
        self.last_seq = since  # None: live only
        self.page_size = page_size  # None: the daemon's maximum
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: seq is followed across all
        self.socket.connect(self.events_endpoint)
        self._backlog: list[Event] = []
        if since is not None:
            self._backlog, seen = self._history(since)
            # Events up to the daemon's seq at that moment are in the backlog or were live-only:
            # a live event just after it is no gap.
            self._replayed_to = seen
        else:
            self._replayed_to = None

    def _history(self, since: int) -> tuple[list[Event], int]:
        """Journaled events of the wanted topics after `since`, page by page (the daemon caps a
        reply's size), and the daemon's last seq when it answered."""
        if self.control is None:
            raise ValueError("history replay needs a control client")
        if not self.history_topics:
            return [], since
        events: list[Event] = []
        while True:
            limit = {"limit": self.page_size} if self.page_size else {}
            reply = self.control.request(
                "history", since=since, topics=self.history_topics, **limit
            )
            page = [event_from_body(item["topic"], item["event"]) for item in reply["events"]]
            events += page
            if not reply.get("more") or not page:
                return events, max(reply.get("last_seq", since), since)
            since = page[-1].seq

    def _deliver(self, event: Event) -> Iterator[Event]:
        last = self.last_seq
        if last is not None and event.seq <= last:
            return  # already seen (delivered via history, or replayed past it)
        if last is not None and self.control is not None and event.seq > last + 1:
            missed, _ = self._history(last)  # fill the gap, this event included
            for old in missed:
                if old.seq > self.last_seq:
                    self.last_seq = old.seq
                    yield old
            if event.seq <= self.last_seq:
                return
        self.last_seq = event.seq
        if topic_matches(event.topic, self.topics):
            yield event

    def events(self, timeout_s: float | None = None) -> Iterator[Event]:
        """Yield the subscribed topics' events forever (or until none arrives for `timeout_s`)."""
        for event in self._backlog:  # history is complete in itself: no gap to look for
            if event.seq > (self.last_seq or 0):
                self.last_seq = event.seq
                yield event
        self._backlog = []
        if self._replayed_to is not None:
            self.last_seq = max(self.last_seq or 0, self._replayed_to)
            self._replayed_to = None
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

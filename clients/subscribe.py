"""Follow the daemon's events: optional history replay, then the live stream, with no gap or duplicate.

ZeroMQ drops what a PUB socket sends before a subscriber's subscription arrives, and `seq` counts
every topic. So the socket subscribes to every topic (the live-only ones are a few small events
per utterance) and follows `seq` across all of them: a jump in `seq` is then a real loss, not
an event of a topic the caller did not ask for. Only journaled topics can be recovered; a loss
is filled by asking `history` for the journaled topics the caller wants since the last seq seen
(and nothing is asked when it wants none). Only the topics asked for are delivered; duplicates
are impossible because only events with seq above the last one seen pass.

A daemon that is not running yet, or restarts, is waited for: ZeroMQ reconnects the socket by
itself, and a socket monitor says when it has, so history since the last seq is fetched at once
(what a restarted daemon published before the reconnect) rather than at the next live event,
which may never come. With `wait`, a daemon that does not answer is waited for instead of raising.
Nobody is left with silence: when no daemon is there within a moment, one line says what is
waited for (stderr, through logging), once per outage.

An `ipc://` endpoint is trusted only while its directory and socket are ours alone
(dictated.socket_dir): checked before connecting, at every (re)connect and before each message
is used, since ZeroMQ reconnects by itself to whatever listens at that path later.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterable, Iterator

import zmq
from zmq.utils.monitor import recv_monitor_message

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

from .control import CommandFailed, ControlClient, DaemonUnavailable, UnsafeEndpoint, guard

log = logging.getLogger(__name__)

_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
#: the largest event accepted (ZMQ_MAXMSGSIZE): a transcript is a few KB; more is hostile
MAX_EVENT_BYTES = 4 * 1024 * 1024
#: a running daemon connects within this; longer, and the user is told what is waited for
WAITING_NOTICE_S = 1.0


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """`--endpoint` (alias `--connect`) and `--control`: spelled the same in every client."""
    parser.add_argument(
        "--endpoint",
        "--connect",
        dest="endpoint",
        metavar="ENDPOINT",
        help="events endpoint, e.g. tcp://127.0.0.1:5556 (default: the per-user ipc socket)",
    )
    parser.add_argument(
        "--control", metavar="ENDPOINT", help="control endpoint (default: the per-user ipc socket)"
    )


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
        """`topics`: ZeroMQ-style prefixes ("" is everything); `since`: replay the journal from
        this seq first (needs `control`); None follows live events only. `wait`: a daemon that
        does not answer (not running yet, restarting) is waited for, with one log line per
        outage, instead of raising DaemonUnavailable."""
        self._context = context or zmq.Context.instance()
        self.events_endpoint = events_endpoint or default_endpoint(EVENTS_SOCKET)
        self.control = control
        self.topics = tuple(topics)
        #: the journaled topics asked for: what history can recover for this subscriber
        self.history_topics = [t for t in JOURNALED_TOPICS if topic_matches(t, self.topics)]
        self.last_seq = since  # None: live only
        self.page_size = page_size  # None: the daemon's maximum
        self.wait = wait
        self.connected = False
        guard(self.events_endpoint)  # before any connect: UnsafeEndpoint names the fix
        #: when to say that no daemon is there (None: said, or connected)
        self._notice_at: float | None = time.monotonic() + WAITING_NOTICE_S
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: seq is followed across all
        self._monitor = self.socket.get_monitor_socket(_LINK_EVENTS)
        self.socket.connect(self.events_endpoint)
        self._links = 0  # handshakes so far: every one after the first is a reconnect
        self._held: list[Event] = []  # live events waiting for a history fill that failed
        self._behind = False  # a history fill is owed (the daemon did not answer)
        self._backlog: list[Event] = []
        self._replayed_to: int | None = None
        try:
            if since is not None:
                try:
                    self._backlog, self._replayed_to = self._history(since)
                except DaemonUnavailable as exc:
                    if not wait:
                        raise
                    log.warning("%s; waiting for it", exc)
                    self._behind, self._notice_at = True, None
            elif wait and control is not None:
                try:
                    control.request("status")  # only to say at once that nothing runs yet
                except DaemonUnavailable as exc:
                    log.warning("%s; waiting for it", exc)
                    self._notice_at = None
        except BaseException:
            self.close()
            raise

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

    def _sync(self, live: list[Event]) -> list[Event]:
        """History since the last seq merged with `live` events, in seq order, each once.

        When the daemon does not answer and `wait` is set, the live events are held and the fill
        is retried at the next reconnect or live event, so nothing is skipped past.
        """
        held = self._held + live
        try:
            missed, _ = self._history(self.last_seq or 0)
        except UnsafeEndpoint:
            raise  # never waited out: the directory will not become ours by itself
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
            self.last_seq = event.seq
            if topic_matches(event.topic, self.topics):
                out.append(event)
        return out

    def _deliver(self, event: Event) -> Iterator[Event]:
        last = self.last_seq
        if last is not None and event.seq <= last:
            return  # already seen (delivered via history, or replayed past it)
        if self.control is not None and (
            self._behind or (last is not None and event.seq > last + 1)
        ):
            yield from self._sync([event])  # fill the gap, this event included
            return
        self.last_seq = event.seq
        if topic_matches(event.topic, self.topics):
            yield event

    def _on_link(self) -> Iterator[Event]:
        message = recv_monitor_message(self._monitor)
        if message["event"] == zmq.EVENT_DISCONNECTED:
            if self.connected:
                log.warning("the daemon went away (%s); waiting for it", self.events_endpoint)
            self.connected = False
            return
        guard(self.events_endpoint)  # what answers now may not be what we checked at the start
        self.connected, self._notice_at = True, None
        self._links += 1
        log.info("connected to the daemon (%s)", self.events_endpoint)
        reconnect = self._links > 1 and self.last_seq is not None
        if self.control is not None and (reconnect or self._behind):
            yield from self._sync([])  # what a restarted daemon published before we reconnected

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
        poller.register(self._monitor, zmq.POLLIN)
        idle_until = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ready = dict(poller.poll(self._poll_ms(idle_until)))
            if not ready:
                self._notice_if_due()
                if idle_until is not None and time.monotonic() >= idle_until:
                    return
                continue
            if timeout_s is not None:  # anything from the socket or its link restarts the wait
                idle_until = time.monotonic() + timeout_s
            if self._monitor in ready:
                yield from self._on_link()
            if self.socket not in ready:
                continue
            frames = self.socket.recv_multipart()
            guard(self.events_endpoint)  # two lstat calls: cheap next to decoding the JSON
            try:
                event = decode_event(frames)
            except ProtocolError:
                continue  # a future or foreign message: ignore, as the protocol asks
            yield from self._deliver(event)

    def _poll_ms(self, idle_until: float | None) -> int | None:
        """How long to poll: until the idle limit or the waiting notice, whichever comes first."""
        due = [t for t in (idle_until, self._notice_at) if t is not None]
        return None if not due else max(0, math.ceil((min(due) - time.monotonic()) * 1000))

    def _notice_if_due(self) -> None:
        """Say once that no daemon is there yet, when it has not connected in a moment."""
        if self._notice_at is None or time.monotonic() < self._notice_at:
            return
        self._notice_at = None
        if not self.connected:
            log.warning(
                "waiting for the dictated daemon at %s (start it with `dictated run`)",
                self.events_endpoint,
            )

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(0)
        self.socket.close(0)

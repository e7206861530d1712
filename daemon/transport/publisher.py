"""The PUB socket and its single owner: only the event loop's publisher touches it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import zmq

from ..errors import DictatedError
from ..journal import Journal
from ..protocol import JOURNALED_TOPICS, Body, Event, body_event, encode_event

log = logging.getLogger(__name__)


class Publisher:
    """Numbers events, journals the durable ones (fsync) and only then sends them.

    PUB never blocks: with no subscriber or a slow one, ZeroMQ drops at its high-water mark,
    which is why transcripts go through the journal first.
    """

    def __init__(self, context: zmq.Context, endpoints: Sequence[str], journal: Journal):
        self.journal = journal
        # seq must grow across restarts, but live-only events (vad, status) are not journaled, so
        # the journal's last seq can be below what the previous run published: clients would drop
        # the new run's events as already seen. A run therefore starts at the wall clock in ms,
        # which no earlier run can have reached (it publishes far fewer than 1000 events a second).
        self.seq = max(journal.last_seq, time.time_ns() // 1_000_000)
        self.endpoints = list(endpoints)
        # a plain (blocking-API) socket: PUB never blocks, and a send error must raise here
        self.socket = zmq.Context.shadow(context.underlying).socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 500)
        self.socket.setsockopt(zmq.SNDHWM, 10_000)
        for endpoint in self.endpoints:
            try:
                self.socket.bind(endpoint)
            except zmq.ZMQError as exc:
                self.socket.close(0)
                raise DictatedError(
                    f"cannot publish on {endpoint}: {exc} (is another program or dictated using it? "
                    "choose another --pub / transport.pub endpoint)"
                ) from exc

    def publish(self, body: Body) -> Event:
        self.seq += 1
        event = body_event(self.seq, body)
        if event.topic in JOURNALED_TOPICS:
            try:
                self.journal.append(event)
            except OSError as exc:  # still publish: a live client should get the text
                log.error(
                    "could not write journal %s (seq %d not durable): %s",
                    self.journal.path,
                    self.seq,
                    exc,
                )
        self.socket.send_multipart(encode_event(event))
        return event

    def close(self) -> None:
        self.socket.close()

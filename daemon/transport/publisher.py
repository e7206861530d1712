"""The PUB socket and its single owner: only the publisher's sender task touches it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

import zmq

from ..errors import DictatedError
from ..journal import Journal
from ..protocol import JOURNALED_TOPICS, Body, Event, body_event, encode_event
from . import tcp_peers
from .ipc_files import MAX_QUEUED_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES, BoundFile, remove_all

log = logging.getLogger(__name__)


class Publisher:
    """Numbers events, journals the durable ones (fsync) and only then sends them, in seq order.

    `publish` never blocks the loop: it numbers the event and queues it; one sender task writes
    the journal on its own thread (fsync can take milliseconds, more on a busy disk) and sends.
    History is read on that same thread, so a reader never sees a half-written line.
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
        self.sent_seq = self.seq  # the last event sent (journaled first, if it is journaled)
        self.endpoints = list(endpoints)
        # a plain (blocking-API) socket: PUB never blocks, and a send error must raise here
        self.socket = zmq.Context.shadow(context.underlying).socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 500)
        self.socket.setsockopt(zmq.SNDHWM, 10_000)
        # ZeroMQ keeps every subscription prefix it is sent: unbounded, one peer grew us by GBs
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        # ... and many small ones add up: queue few, and let only this account subscribe over tcp
        self.socket.setsockopt(zmq.RCVHWM, MAX_QUEUED_SUBSCRIPTIONS)
        self._files: list[BoundFile] = []
        for endpoint in self.endpoints:
            try:
                self.socket.bind(endpoint)
            except zmq.ZMQError as exc:
                self.socket.close(0)
                remove_all(self._files)
                raise DictatedError(
                    f"cannot publish on {endpoint}: {exc} (is another program or dictated using it? "
                    "choose another --pub / transport.pub endpoint)"
                ) from exc
            if bound := BoundFile.of(endpoint):
                self._files.append(bound)
        self._peers = tcp_peers.guard(self.socket, self.endpoints)
        self._outbox: asyncio.Queue[Event | None] = asyncio.Queue()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._sender: asyncio.Task | None = None

    def publish(self, body: Body) -> Event:
        """Number the event and queue it for the journal and the socket."""
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="publisher")
        self.seq += 1
        event = body_event(self.seq, body)
        self._outbox.put_nowait(event)
        return event

    async def history(
        self, since: int, limit: int, topics: Collection[str] | None
    ) -> tuple[list[Event], bool, int]:
        """Journaled events after `since` (see Journal.since) and the last seq sent before they
        were read: everything up to it is in the journal or was live-only."""
        last_sent = self.sent_seq
        loop = asyncio.get_running_loop()
        events, more = await loop.run_in_executor(
            self._io, self.journal.since, since, limit, topics
        )
        return events, more, last_sent

    async def _send_all(self) -> None:
        loop = asyncio.get_running_loop()
        while (event := await self._outbox.get()) is not None:
            if event.topic in JOURNALED_TOPICS:
                try:
                    await loop.run_in_executor(self._io, self.journal.append, event)
                except OSError as exc:  # still publish: a live client should get the text
                    log.error(
                        "could not write journal %s (seq %d not durable): %s",
                        self.journal.path,
                        event.seq,
                        exc,
                    )
            try:
                self.socket.send_multipart(encode_event(event))
            except Exception:  # one event that cannot be sent must not stop the later ones
                log.exception("could not publish seq %d", event.seq)
            self.sent_seq = event.seq

    async def aclose(self) -> None:
        """Send what is queued, then close the socket and the journal."""
        if self._sender is not None:
            self._outbox.put_nowait(None)
            await self._sender
        if self._peers is not None:
            self._peers.close()
        self.socket.close()
        remove_all(self._files)
        self._io.shutdown(wait=True)
        self.journal.close()

"""Which server gets the next request: least outstanding requests, failing servers sat out.

Thread-safe (one lock around tiny critical sections): the daemon has one inference thread, but the
load benchmark and any multi-stream user share one engine across threads, and the control socket
reads the health snapshot from the event loop's thread.

Ties between equally loaded servers rotate from a random start. A daemon with one inference thread
always sees zero outstanding requests, so without rotation every room's daemon would send
everything to the first URL; with it, many daemons spread evenly. (A router in front of the
replicas, e.g. vllm-router, balances on the servers' real load across all rooms.)

A failure takes a server out for `backoff_s`, doubling with each consecutive failure up to
`max_backoff_s`; a 429/503 with Retry-After is honoured instead. The next request after that time
is the retry; success resets the backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerHealth:
    """One server as status, doctor and error messages report it."""

    url: str
    healthy: bool
    outstanding: int
    latency_ms: float | None  # the last successful request's
    last_error: str | None
    retry_in_s: float | None  # while taken out: how long until it is tried again
    succeeded: int
    failed: int

    def to_json(self) -> dict:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "outstanding": self.outstanding,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "last_error": self.last_error,
            "retry_in_s": None if self.retry_in_s is None else round(self.retry_in_s, 2),
            "succeeded": self.succeeded,
            "failed": self.failed,
        }

    def describe(self) -> str:
        if self.healthy:
            return f"{self.url}: ok" + (
                f" ({self.latency_ms:.0f} ms)" if self.latency_ms is not None else ""
            )
        wait = f", retried in {self.retry_in_s:.1f} s" if self.retry_in_s else ""
        return f"{self.url}: {self.last_error}{wait}"


class _Server:
    """Mutable per-server state; touched only with the pool's lock held."""

    def __init__(self, url: str):
        self.url = url
        self.outstanding = 0
        self.consecutive_failures = 0
        self.down_until = 0.0  # monotonic
        self.latency_ms: float | None = None
        self.last_error: str | None = None
        self.succeeded = 0
        self.failed = 0


class ServerPool:
    def __init__(
        self,
        urls: tuple[str, ...],
        backoff_s: float,
        max_backoff_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not urls:
            raise ValueError("a server pool needs at least one URL")
        self._servers = [_Server(u) for u in urls]
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = random.randrange(len(urls))

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self._servers)

    def acquire(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The least-loaded server that is in service and not in `exclude`; None if there is none.

        The caller must `succeeded` or `failed` it afterwards (that releases the slot).
        """
        with self._lock:
            now = self._clock()
            n = len(self._servers)
            candidates = [
                (s.outstanding, (i - self._turn) % n, s)
                for i, s in enumerate(self._servers)
                if s.url not in exclude and s.down_until <= now
            ]
            if not candidates:
                return None
            _, _, server = min(candidates, key=lambda c: c[:2])
            self._turn = (self._servers.index(server) + 1) % n
            server.outstanding += 1
            return server.url

    def begin(self, url: str) -> None:
        """Count a request to a given server (a health probe), bypassing the choice."""
        with self._lock:
            self._get(url).outstanding += 1

    def succeeded(self, url: str, latency_ms: float) -> None:
        with self._lock:
            server = self._get(url)
            server.outstanding -= 1
            server.succeeded += 1
            server.latency_ms = latency_ms
            recovered = server.consecutive_failures > 0
            server.consecutive_failures = 0
            server.down_until = 0.0
            server.last_error = None
        if recovered:
            log.info("remote: %s answers again (%.0f ms)", url, latency_ms)

    def released(self, url: str) -> None:
        """A request that says nothing about the server's health (e.g. one it rightly refused)."""
        with self._lock:
            self._get(url).outstanding -= 1

    def failed(self, url: str, reason: str, retry_after_s: float | None = None) -> None:
        with self._lock:
            server = self._get(url)
            server.outstanding -= 1
            server.failed += 1
            server.consecutive_failures += 1
            if retry_after_s is not None:
                pause = retry_after_s
            else:
                pause = min(
                    self._backoff_s * 2 ** (server.consecutive_failures - 1), self._max_backoff_s
                )
            server.down_until = self._clock() + pause
            server.last_error = reason
        log.warning("remote: %s failed: %s; taken out for %.1f s", url, reason, pause)

    def health(self) -> tuple[ServerHealth, ...]:
        with self._lock:
            now = self._clock()
            return tuple(
                ServerHealth(
                    url=s.url,
                    healthy=s.down_until <= now and s.consecutive_failures == 0,
                    outstanding=s.outstanding,
                    latency_ms=s.latency_ms,
                    last_error=s.last_error,
                    retry_in_s=max(0.0, s.down_until - now) if s.down_until > now else None,
                    succeeded=s.succeeded,
                    failed=s.failed,
                )
                for s in self._servers
            )

    def _get(self, url: str) -> _Server:
        for server in self._servers:
            if server.url == url:
                return server
        raise KeyError(url)

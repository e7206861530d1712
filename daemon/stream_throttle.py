"""Streamed text of one decode, handed on at most once per interval: the newest text wins.

A streaming server may send thousands of deltas per utterance, and each one is the whole text so
far once accumulated; publishing every one would be quadratic in the text (issue 15). The throttle
delivers the first text at once, then at most one per interval, always the newest; a text that is
waiting when the interval ends is delivered then (a timer), so a server that pauses mid-stream
still shows what it sent. It lives on the event loop; the decoding thread hands text over with
`offer_threadsafe`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class StreamThrottle:
    """Create on the loop; `close()` there before the decode's result is delivered, so nothing
    of this stream comes after it."""

    def __init__(self, deliver: Callable[[str], None], interval_s: float):
        self._deliver = deliver
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._latest: str | None = None
        self._last = -interval_s  # loop time of the last delivery
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def offer_threadsafe(self, text: str) -> None:
        """From any thread: queue `text` on the loop (in order with other loop callbacks)."""
        self._loop.call_soon_threadsafe(self.offer, text)

    def offer(self, text: str) -> None:
        """On the loop: the text so far; delivered now, or when the interval is over."""
        if self._closed:
            return
        self._latest = text
        if self._timer is not None:
            return  # a delivery is due: it will carry this text
        wait = self._last + self._interval_s - self._loop.time()
        if wait <= 0:
            self._flush()
        else:
            self._timer = self._loop.call_later(wait, self._flush)

    def close(self) -> None:
        """No delivery after this (the waiting text is dropped: the result supersedes it)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        self._timer = None
        text, self._latest = self._latest, None
        if text is None or self._closed:
            return
        self._last = self._loop.time()
        self._deliver(text)

"""Warming up an engine whose server may not be up yet: tried again with backoff, stoppable.

At login a service starts before the network (or the GPU box) is up, so a remote engine's first
warm-up request is refused. Exiting would make the service manager restart the daemon a few times
within seconds and then give up for good; waiting inside the daemon, with a status that says what
it waits for, recovers by itself as soon as the server answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .errors import RemoteError

log = logging.getLogger(__name__)

#: a warm-up whose server did not answer is tried again after this long, doubling ...
WARMUP_RETRY_S = 1.0
WARMUP_RETRY_MAX_S = 30.0  # ... up to this


async def warm_up(
    warm: Callable[[], Awaitable[None]],
    stop: asyncio.Event | None,
    waiting: Callable[[str | None], None],
) -> bool:
    """Await `warm()` until it succeeds (True), or until `stop` is set between tries (False).

    A RemoteError (no server answered) is retried after WARMUP_RETRY_S, doubling up to
    WARMUP_RETRY_MAX_S, with `waiting(why)` called before each wait and `waiting(None)` at the
    end. Any other error, or a RemoteError when there is no `stop` to end the wait, propagates.
    A stop during a request takes effect when it ends (bounded by the engine's own timeouts).
    """
    delay = WARMUP_RETRY_S
    try:
        while True:
            try:
                await warm()
                return True
            except RemoteError as exc:
                if stop is None:
                    raise
                why = f"waiting for the transcription server ({exc}); next try in {delay:g} s"
                log.warning("%s", why)
                waiting(why)
            if await _stopped_within(stop, delay):
                return False
            delay = min(delay * 2, WARMUP_RETRY_MAX_S)
    finally:
        waiting(None)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True at once if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True

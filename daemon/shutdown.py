"""How long a stop may take: one set of bounds for the daemon's drain and the service managers' kill timers.

launchd (`ExitTimeOut`, default 20 s) and systemd (`TimeoutStopSec`, default 90 s) send SIGKILL when a
stopping process outlives their timer. The daemon, on SIGTERM, stops capture, flushes the open
utterance, lets the worker finish what is queued and lingers so subscribers get the last events. If
the manager's timer were shorter than that, it would kill the daemon while it is still transcribing
the last sentence; so the unit files are rendered from `service_stop_timeout_s()`, derived from the
daemon's own bounds here.
"""

from __future__ import annotations

import math

#: the worker finishes queued utterances at most this long after a stop signal; any it cannot
#: finish are published as `error` events with their audio saved (never silently dropped)
DRAIN_TIMEOUT_S = 60.0
#: an audio source that does not end within this long after it is closed is cancelled
STOP_CAPTURE_TIMEOUT_S = 5.0
#: closing sockets and the journal, an audio driver slow to let go
STOP_MARGIN_S = 9.0
#: transport.linger_s's default (config.py): publishing goes on this long after the last event
DEFAULT_LINGER_S = 1.0


def service_stop_timeout_s(linger_s: float = DEFAULT_LINGER_S) -> int:
    """What launchd's ExitTimeOut and systemd's TimeoutStopSec are set to (75 s by default)."""
    return math.ceil(STOP_CAPTURE_TIMEOUT_S + DRAIN_TIMEOUT_S + linger_s + STOP_MARGIN_S)


SERVICE_STOP_TIMEOUT_S = service_stop_timeout_s()

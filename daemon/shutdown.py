"""How long a stop may take: one set of bounds for the daemon's drain and the service managers' kill timers.

launchd (`ExitTimeOut`, default 20 s) and systemd (`TimeoutStopSec`, default 90 s) send SIGKILL when a
stopping process outlives their timer. The daemon, on SIGTERM, stops capture, flushes the open
utterance and lets the worker finish what is queued. If the manager's timer were shorter than that,
it would kill the daemon while it is still transcribing the last sentence; so the unit files are
rendered from `SERVICE_STOP_TIMEOUT_S`, which is derived from the daemon's own bounds here.
"""

from __future__ import annotations

#: the worker finishes queued utterances at most this long after a stop signal; any it cannot
#: finish are published as `error` events with their audio saved (never silently dropped)
DRAIN_TIMEOUT_S = 60.0
#: an audio source that does not end within this long after it is closed is cancelled
STOP_CAPTURE_TIMEOUT_S = 5.0
#: linger (transport.linger_s, 1 s by default), closing sockets and the journal, a slow audio driver
STOP_MARGIN_S = 10.0
#: what launchd's ExitTimeOut and systemd's TimeoutStopSec are set to: 75 s
SERVICE_STOP_TIMEOUT_S = int(STOP_CAPTURE_TIMEOUT_S + DRAIN_TIMEOUT_S + STOP_MARGIN_S)

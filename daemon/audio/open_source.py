"""The config's `audio.source` spec -> an AudioSource.

Apart from `source.py` so that the microphone (which needs PortAudio) is imported only here and
only when asked for, and `mic.py` can import the interface from `source.py` without a cycle.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from .source import AudioSource, FileSource, StdinSource


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    device: str | int | None = None,
    idle_block_ms: int | None = None,
) -> AudioSource:
    """`mic`, `system`, `file:PATH` or `-` -> an AudioSource; `realtime` paces a file or stdin.

    Raises ConfigError for any other spec, AudioInputError for a file or stdin that is no audio.
    """
    if spec == "-":
        return StdinSource(realtime=realtime)
    if spec.startswith("file:"):
        return FileSource(Path(spec[len("file:") :]), realtime=realtime)
    if spec == "mic":
        from .mic import MicSource  # sounddevice needs PortAudio: import only when used

        # the daemon's microphone survives a lost device (doctor's one-shot probe does not)
        return MicSource(device=device, reconnect=True, idle_block_ms=idle_block_ms)
    if spec == "system":  # what the computer plays (the default output), not the microphone
        return open_system_source()
    raise ConfigError(
        f"audio.source: unknown audio source {spec!r}; use mic, system, file:PATH or - (stdin)"
    )


def open_system_source() -> AudioSource:
    """The platform's capture of what it plays: ScreenCaptureKit on macOS, else the default
    output's monitor through PulseAudio or PipeWire's pulse server."""
    if sys.platform == "darwin":
        from .system_macos import MacSystemSource

        return MacSystemSource()
    from .system import SystemSource  # pulsectl loads libpulse: import only when used

    return SystemSource()

"""The config's `audio.source` spec -> an AudioSource.

Apart from `source.py` so that the microphone (which needs PortAudio) is imported only here and
only when asked for, and `mic.py` can import the interface from `source.py` without a cycle.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AudioError
from .source import AudioSource, FileSource, StdinSource


def open_source(
    spec: str, *, realtime: bool = False, device: str | int | None = None
) -> AudioSource:
    """`mic`, `file:PATH` or `-` -> an AudioSource. Raises AudioError for anything else."""
    if spec == "-":
        return StdinSource()
    if spec.startswith("file:"):
        return FileSource(Path(spec[len("file:") :]), realtime=realtime)
    if spec == "mic":
        from .mic import MicSource  # sounddevice needs PortAudio: import only when used

        return MicSource(device=device)
    raise AudioError(f"source: unknown audio source {spec!r}; use mic, file:PATH or - (stdin)")

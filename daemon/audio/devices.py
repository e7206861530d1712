"""Input devices as PortAudio sees them: listing, choosing one by name or index, and a table.

sounddevice is imported lazily (it loads the PortAudio shared library at import time), so
`dictated --help`, config validation and file sources work on machines without PortAudio; the
first thing that needs a microphone gets one clear MissingDependencyError instead.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from types import ModuleType

from ..errors import AudioError, MissingDependencyError


@dataclass(frozen=True)
class InputDevice:
    """One PortAudio device that can capture (max_input_channels > 0)."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool


def import_sounddevice() -> ModuleType:
    """`import sounddevice`, turning a missing PortAudio library into a message that says what to install."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        if platform.system() == "Darwin":
            install = (
                "pip install --force-reinstall sounddevice (its macOS wheels bundle PortAudio)"
            )
        else:
            install = (
                "apt install libportaudio2 (Debian/Ubuntu), dnf install portaudio (Fedora), "
                "pacman -S portaudio (Arch)"
            )
        raise MissingDependencyError(
            "the PortAudio library", f"Microphone capture ({exc})", install
        ) from exc
    except ImportError as exc:
        raise MissingDependencyError(
            "the sounddevice package", "Microphone capture", "pip install sounddevice"
        ) from exc
    return sounddevice


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, in PortAudio's index order."""
    sd = import_sounddevice()
    try:
        default_input = _default_input_index(sd)
        hostapis = sd.query_hostapis()
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioError(f"cannot list audio devices: {exc}") from exc
    return [
        InputDevice(
            index=int(info["index"]),
            name=str(info["name"]),
            hostapi=str(hostapis[info["hostapi"]]["name"]),
            channels=int(info["max_input_channels"]),
            default_samplerate=float(info["default_samplerate"]),
            is_default=int(info["index"]) == default_input,
        )
        for info in devices
        if info["max_input_channels"] > 0
    ]


def resolve_device(spec: str | int | None) -> int | None:
    """A user's device choice -> PortAudio device index; None stays None (the system default input).

    An int, or a string of digits, is an index. Any other string matches device names
    case-insensitively: an exact name wins, otherwise the substring must match exactly one input
    device. AudioError lists the candidates when nothing or more than one device matches.
    """
    if spec is None:
        return None
    devices = list_input_devices()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for device in devices:
            if device.index == index:
                return index
        raise AudioError(
            f"audio device {index} is not an input device (or does not exist); "
            f"input devices:\n{format_device_table(devices)}"
        )
    wanted = spec.strip().casefold()
    if not wanted:
        raise AudioError("audio device: empty name; give a name, an index, or leave it unset")
    exact = [d for d in devices if d.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0].index
    matches = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(matches) == 1:
        return matches[0].index
    if not matches:
        raise AudioError(
            f"no input device matches {spec!r}; input devices:\n{format_device_table(devices)}"
        )
    raise AudioError(
        f"{len(matches)} input devices match {spec!r}; use a longer name or the index:\n"
        f"{format_device_table(matches)}"
    )


def device_info(index: int | None) -> InputDevice:
    """The InputDevice for `index`, or for the system default input when `index` is None."""
    devices = list_input_devices()
    if index is None:
        defaults = [d for d in devices if d.is_default]
        if not defaults:
            raise AudioError(
                "there is no default input device; choose one by name or index:\n"
                + format_device_table(devices)
            )
        return defaults[0]
    for device in devices:
        if device.index == index:
            return device
    raise AudioError(f"audio device {index} is not an input device (or does not exist)")


def format_device_table(devices: list[InputDevice]) -> str:
    """A plain-text table for `dictated devices` and for error messages; `*` marks the default."""
    if not devices:
        return "  (no input devices found)"
    rows = [("", "index", "name", "host API", "channels", "default rate")]
    rows += [
        (
            "*" if d.is_default else "",
            str(d.index),
            d.name,
            d.hostapi,
            str(d.channels),
            f"{d.default_samplerate:g} Hz",
        )
        for d in devices
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _default_input_index(sd: ModuleType) -> int:
    """PortAudio's default input device index (honouring sd.default.device), or -1 when there is none."""
    try:
        return int(sd.query_devices(kind="input")["index"])
    except (sd.PortAudioError, ValueError):
        return -1

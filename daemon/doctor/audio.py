"""Audio checks: PortAudio loads, input devices exist, the chosen one opens and hears something.

The microphone check records `mic_seconds` through the daemon's own `MicSource`, so it exercises
exactly the path the daemon uses (rate fallback, resampling, stall detection). Exact digital
silence is what macOS delivers when microphone access is denied, so it fails with that fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import sys
from collections.abc import Iterator

import numpy as np

from ..audio.format import SAMPLE_RATE
from ..errors import AudioError, MissingDependencyError
from .checks import FAIL, OK, SKIP, WARN, CheckResult, DoctorContext

PROBE_STALL_S = 2.0  # a device that delivers nothing for this long (after its start-up grace) fails
PROBE_CLOSE_S = 1.0
FULL_SCALE = 32768.0


def check_audio(context: DoctorContext) -> Iterator[CheckResult]:
    source = context.config.audio.source
    if source != "mic":
        yield CheckResult("microphone", SKIP, f"audio.source is {source!r}: no microphone is used")
        return
    from ..audio.devices import import_sounddevice, list_input_devices, resolve_device

    try:
        sd = import_sounddevice()
    except MissingDependencyError as exc:
        yield CheckResult("PortAudio", FAIL, "PortAudio cannot be loaded", fix=str(exc))
        return
    yield CheckResult("PortAudio", OK, sd.get_portaudio_version()[1])

    try:
        devices = list_input_devices()
    except AudioError as exc:
        yield CheckResult("input devices", FAIL, str(exc), fix=_no_device_fix())
        return
    if not devices:
        yield CheckResult("input devices", FAIL, "no input device found", fix=_no_device_fix())
        return
    default = next((d.name for d in devices if d.is_default), None)
    yield CheckResult(
        "input devices",
        OK,
        f"{len(devices)} input device(s); default: {default or '(none)'}",
        details={"devices": [d.name for d in devices], "default": default},
    )

    spec = context.config.audio.device
    try:
        resolve_device(spec)
    except AudioError as exc:
        yield CheckResult(
            "microphone",
            FAIL,
            f"audio.device {spec!r} does not select one input device",
            fix=f"{exc}\nset audio.device (or --input-device) to one of these",
        )
        return
    yield _probe_microphone(context, spec)


def _probe_microphone(context: DoctorContext, spec: str | int | None) -> CheckResult:
    from ..audio.mic import MicSource, all_zero_message

    try:
        source = MicSource(spec, stall_timeout_s=PROBE_STALL_S, close_timeout_s=PROBE_CLOSE_S)
        pcm = asyncio.run(_record(source, int(context.mic_seconds * SAMPLE_RATE)))
    except AudioError as exc:
        daemon = context.daemon or {}
        if str(daemon.get("source", "")).startswith("mic:"):
            return CheckResult(
                "microphone",
                WARN,
                f"cannot open it while the running daemon (pid {daemon.get('pid')}) uses "
                f"{daemon.get('source')}: {exc}",
            )
        return CheckResult(
            "microphone",
            FAIL,
            str(exc),
            fix="check the device is plugged in and not used exclusively by another program; "
            "`dictated devices` lists what PortAudio sees",
        )
    name = source.description.removeprefix("mic:")
    seconds = len(pcm) / SAMPLE_RATE
    details = {
        "device": name,
        "device_rate": source.device_rate,
        "seconds": round(seconds, 3),
        "peak_dbfs": _dbfs(np.max(np.abs(pcm.astype(np.float64)), initial=0.0)),
        "rms_dbfs": _dbfs(
            math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0
        ),
    }
    if not pcm.any():
        return CheckResult(
            "microphone",
            FAIL,
            f"{name!r} delivered {seconds:.1f} s of exact digital silence (all-zero samples)",
            fix=all_zero_message(name, seconds) + _permission_hint(),
            details=details,
        )
    return CheckResult(
        "microphone",
        OK,
        f"{name!r} delivered {seconds:.1f} s at {source.device_rate} Hz "
        f"(peak {details['peak_dbfs']:.0f} dBFS, rms {details['rms_dbfs']:.0f} dBFS)",
        details=details,
    )


async def _record(source, samples: int) -> np.ndarray:
    """At least `samples` samples from `source` (the daemon's own stall detection bounds the wait)."""
    blocks: list[np.ndarray] = []
    got = 0
    try:
        async with contextlib.aclosing(source.blocks()) as stream:
            async for block in stream:
                blocks.append(block.pcm)
                got += len(block.pcm)
                if got >= samples:
                    break
    finally:
        await source.aclose()
    return np.concatenate(blocks)[:samples] if blocks else np.zeros(0, np.int16)


def _dbfs(level: float) -> float | None:
    """Decibels relative to full scale; None for digital silence (JSON has no -infinity)."""
    return round(20 * math.log10(level / FULL_SCALE), 1) if level > 0 else None


def _no_device_fix() -> str:
    if platform.system() == "Darwin":
        return "connect a microphone (System Settings › Sound › Input shows what macOS sees)"
    return (
        "connect a microphone; check that the sound server runs (PipeWire/PulseAudio) and that "
        "`arecord -l` lists a capture device; `dictated devices` shows what PortAudio sees"
    )


def _permission_hint() -> str:
    if platform.system() != "Darwin":
        return ""
    return (
        "\nTo ask again: `tccutil reset Microphone`, then run `dictated doctor` from Terminal "
        f"(grants Terminal) or restart the service (asks for {sys.executable})."
    )

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
from .result import FAIL, OK, SKIP, WARN, CheckResult, DoctorContext

PROBE_STALL_S = 2.0  # a device that delivers nothing for this long (after its start-up grace) fails
PROBE_CLOSE_S = 1.0
FULL_SCALE = 32768.0


def check_audio(context: DoctorContext) -> Iterator[CheckResult]:
    audio = context.config.audio
    chosen = audio.sources or (audio.source,)  # "LABEL=SPEC" or "SPEC" each
    specs = {spec.split("=", 1)[1] if "=" in spec.split(":", 1)[0] else spec for spec in chosen}
    if "system" in specs:
        yield check_system_audio()
    if "mic" not in specs:
        sources = ", ".join(map(repr, chosen))
        yield CheckResult("microphone", SKIP, f"audio source {sources}: no microphone is used")
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


def check_system_audio() -> CheckResult:
    """`system` source: Linux needs a reachable PulseAudio/PipeWire server with an output;
    macOS needs the Screen & System Audio Recording permission (ScreenCaptureKit)."""
    if platform.system() == "Darwin":
        return _macos_system_audio()
    from ..audio.system_pulse import parec_path, probe_default_output

    try:
        parec_path()
        output = probe_default_output()
    except MissingDependencyError as exc:
        return CheckResult("system audio", FAIL, "a piece is missing", fix=str(exc))
    except AudioError as exc:
        return CheckResult("system audio", FAIL, str(exc).split(" (")[0], fix=str(exc))
    return CheckResult(
        "system audio",
        OK,
        f"{output.server}: default output {output.description!r}, captured from {output.monitor}",
        details={"sink": output.sink, "monitor": output.monitor, "server": output.server},
    )


def _macos_system_audio() -> CheckResult:
    """The Screen & System Audio Recording permission, read without prompting
    (CGPreflightScreenCaptureAccess); it is granted per app: the terminal running `doctor` here,
    the Python binary for the login service."""
    fix = (
        "System Settings › Privacy & Security › Screen & System Audio Recording: allow your "
        f"terminal (for the login service: {sys.executable}), then restart dictated"
    )
    try:
        import ScreenCaptureKit  # noqa: F401
        from Quartz import CGPreflightScreenCaptureAccess
    except ImportError:
        return CheckResult(
            "system audio",
            FAIL,
            "the pyobjc frameworks for ScreenCaptureKit are not installed",
            fix="pip install -e '/path/to/clone[macos]'",
        )
    if not CGPreflightScreenCaptureAccess():
        return CheckResult(
            "system audio",
            FAIL,
            "this program may not record the screen and system audio (ScreenCaptureKit); "
            "macOS asks on the first capture",
            fix=fix,
        )
    return CheckResult(
        "system audio", OK, "ScreenCaptureKit: the recording permission is granted here"
    )

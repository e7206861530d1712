"""ALSA capture devices defined per test process, so PortAudio's real input path runs without a sound card.

alsa-lib reads the files listed in ALSA_CONFIG_PATH *instead of* /usr/share/alsa/alsa.conf, so the
file written here is the whole ALSA world of the process: no cards, no `<confdir:...>` includes,
only the PCMs we define. Built-in plugin types (file, null, plug, empty) need no includes.
PortAudio enumerates devices once, in Pa_Initialize (at `import sounddevice`), so every scenario
runs in a subprocess started with its own ALSA_CONFIG_PATH and reports a JSON object on stdout.

What the devices are (all verified against alsa-lib 1.2.8 and PortAudio 19.6 on Debian):
- `speech_capture`: `type file` over a `null` slave with `infile` = raw s16le mono: capture delivers
  the file's samples verbatim. It is not paced by a clock (the null slave is always ready), so
  capture runs faster than real time; after the file ends it repeats stale buffer contents and
  never reports an error.
- `rate_locked_capture`: a `plug` whose slave is fixed at one rate and whose rate converter does
  not exist, so opening at any other rate fails in hw_params, exactly like hardware that only
  runs at 48 kHz. PortAudio then reports that rate as the device's default rate.
- `silent_capture`: the file plugin reading /dev/zero: exact digital zeros, as a microphone
  delivers on macOS when access was denied. (A bare `null` PCM is no good: its capture buffer is
  uninitialised memory, not zeros.)
- `fifo_capture`: `infile` is a named pipe; the device blocks in read() when the pipe is empty,
  which is a genuine stall: PortAudio's thread stops calling back and cannot be cancelled until
  the pipe delivers data or reaches end of file.
- `playback_only`: the file plugin with an infile that cannot be opened: PortAudio lists it with
  zero input channels.

Pitfall: PortAudio 19.6 aborts the process (assertion `devIdx < numDeviceNames` in
BuildDeviceList) when no PCM named `default` or `dmix` exists, so `write_config` always writes one.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
RESULT_MARK = "ALSA-SCENARIO-RESULT "


@dataclass(frozen=True)
class Pcm:
    """One `pcm.NAME { ... }` definition."""

    name: str
    body: str


def _file_pcm(infile: Path | str) -> str:
    return (
        f'type file; slave.pcm {{ type null }}; file "/dev/null"; infile "{infile}"; format "raw"'
    )


def speech_capture(name: str, infile: Path) -> Pcm:
    return Pcm(name, _file_pcm(infile))


def rate_locked_capture(name: str, infile: Path, rate: int) -> Pcm:
    return Pcm(
        name,
        f"type plug; slave {{ pcm {{ {_file_pcm(infile)} }}; rate {rate} }}; "
        'rate_converter "dictated_test_no_such_converter"',
    )


def silent_capture(name: str) -> Pcm:
    return Pcm(name, _file_pcm("/dev/zero"))


def fifo_capture(name: str, fifo: Path) -> Pcm:
    return Pcm(name, _file_pcm(fifo))


def playback_only(name: str) -> Pcm:
    return Pcm(name, _file_pcm("/nonexistent/dictated-test-no-input.raw"))


def write_config(path: Path, pcms: list[Pcm], default: str) -> Path:
    """An asound.conf holding `pcms` and a `default` PCM that aliases the one named `default`."""
    names = [p.name for p in pcms]
    if default not in names:
        raise ValueError(f"default {default!r} is not one of {names}")
    lines = [f'pcm.default {{ type empty; slave.pcm "{default}" }}']
    lines += [f"pcm.{p.name} {{ {p.body} }}" for p in pcms]
    path.write_text("\n".join(lines) + "\n")
    return path


def portaudio_missing_reason() -> str | None:
    """Why PortAudio tests cannot run here, or None when they can."""
    if ctypes.util.find_library("portaudio") is None:
        return "PortAudio library not found (apt install libportaudio2)"
    return None


def run_scenario(
    config: Path | None, module: str, function: str, timeout: float = 60.0, **kwargs
) -> dict:
    """Run `module.function(**kwargs)` in a fresh Python with ALSA_CONFIG_PATH=config; its JSON result.

    The function must return a JSON-serialisable dict. Its stderr (ALSA and log messages) is
    returned under "stderr" for assertions and shown when the child fails.
    """
    env = dict(os.environ)
    if config is not None:
        env["ALSA_CONFIG_PATH"] = str(config)
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR.parent)!r})\n"  # the repo: `tests.` modules import
        f"from {module} import {function} as scenario\n"
        "result = scenario(**json.loads(sys.argv[1]))\n"
        f"print({RESULT_MARK!r} + json.dumps(result), flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    results = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not results:
        raise AssertionError(
            f"scenario {module}.{function} failed (exit {proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    result = json.loads(results[-1][len(RESULT_MARK) :])
    result["stderr"] = proc.stderr
    return result

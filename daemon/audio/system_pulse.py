"""The two PulseAudio clients behind the `system` source (system.py): pulsectl for the server's
state and events, parec for the audio. Kept apart so system.py holds only the source's logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AudioError, MissingDependencyError
from .format import SAMPLE_RATE, SAMPLE_WIDTH

CHUNK_MS = 120  # parec's fragment and our read size: the mic's PortAudio block (4 VAD frames)
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000 * SAMPLE_WIDTH  # 3840 bytes
CONNECT_TIMEOUT_S = 2.0  # a sound server that does not answer within this is not there
STOP_TIMEOUT_S = 2.0  # parec that does not exit after SIGTERM within this is killed
STDERR_LIMIT = 2000  # bytes of parec's complaint kept for the message

START_HINT = (
    "start the sound server (`systemctl --user start pipewire-pulse` or `pulseaudio --start`), "
    "or install one (`sudo apt install pipewire-pulse`, or `pulseaudio`)"
)


@dataclass(frozen=True)
class Output:
    """The default output as the sound server describes it."""

    sink: str
    monitor: str  # the source that carries what the sink plays
    description: str
    server: str  # the server's name and version


def import_pulsectl():
    """pulsectl, or MissingDependencyError naming what is missing (it loads libpulse at import)."""
    try:
        import pulsectl
    except ImportError as exc:
        raise MissingDependencyError(
            "pulsectl", "the system audio source", "pip install pulsectl"
        ) from exc
    except OSError as exc:  # libpulse.so.0 not found
        raise MissingDependencyError(
            "libpulse", "the system audio source", "sudo apt install libpulse0"
        ) from exc
    return pulsectl


def parec_path() -> str:
    path = shutil.which("parec")
    if path is None:
        raise MissingDependencyError(
            "parec", "the system audio source", "sudo apt install pulseaudio-utils"
        )
    return path


def server_unreachable(why: str) -> AudioError:
    where = os.environ.get("PULSE_SERVER") or "the default socket ($XDG_RUNTIME_DIR/pulse/native)"
    return AudioError(
        f"system audio: no PulseAudio/PipeWire sound server answers at {where} ({why}); "
        f"{START_HINT}"
    )


def default_output(pulse) -> Output | None:
    """The default sink and its monitor, or None when the server has no output at all."""
    import pulsectl

    info = pulse.server_info()
    if not info.default_sink_name:
        return None
    try:
        sink = pulse.get_sink_by_name(info.default_sink_name)
    except pulsectl.PulseIndexError:
        return None
    server = f"{info.server_name} {info.server_version}"
    return Output(sink.name, sink.monitor_source_name, sink.description, server)


def connect(pulsectl, name: str):
    """A connected pulsectl client, never spawning a server. Without a timeout: pulsectl's
    `connect(timeout=)` always waits the whole timeout (24.12), so callers bound it themselves."""
    pulse = pulsectl.Pulse(name, connect=False)
    try:
        pulse.connect(autospawn=False)
    except Exception:
        pulse.close()
        raise
    return pulse


def probe_default_output(timeout_s: float = CONNECT_TIMEOUT_S) -> Output:
    """Connect once and describe the default output; AudioError naming the fix when none.
    On a thread, so a server that accepts but never answers costs `timeout_s`, not a hang."""
    pulsectl = import_pulsectl()
    answer: list[Output | None | Exception] = []

    def probe() -> None:
        try:
            with connect(pulsectl, "dictated-probe") as pulse:
                answer.append(default_output(pulse))
        except pulsectl.PulseError as exc:
            answer.append(exc)

    thread = threading.Thread(target=probe, name="system-audio-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not answer:
        raise server_unreachable(f"no answer within {timeout_s:.0f} s")
    if isinstance(answer[0], Exception):
        raise server_unreachable(str(answer[0]) or type(answer[0]).__name__)
    if answer[0] is None:
        raise AudioError("system audio: the sound server has no output device (no sink) to follow")
    return answer[0]


class ServerWatch:
    """The thread that follows the default output; reports `(output, error)` on the loop."""

    def __init__(self, report: Callable[[Output | None, str | None], None], backoff_s):
        self._report = report
        self._backoff = backoff_s
        self._stop = threading.Event()
        self._pulse = None
        self._thread = threading.Thread(target=self._run, name="system-audio-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        pulse = self._pulse
        if pulse is not None:
            with contextlib.suppress(Exception):
                pulse.event_listen_stop()

    def _run(self) -> None:
        pulsectl = import_pulsectl()
        attempt = 0
        while not self._stop.is_set():
            try:
                self._follow(pulsectl)
                attempt = 0
            except Exception as exc:  # the thread must go on following the server
                # PulseError, PulseDisconnected (not a PulseError), or libpulse failing a call
                self._report(None, str(exc) or f"the sound server went away ({type(exc).__name__})")
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                self._stop.wait(delay)

    def _follow(self, pulsectl) -> None:
        """One connection: report the default output now and after every server change."""
        changed = threading.Event()

        def on_event(_event) -> None:
            changed.set()
            raise pulsectl.PulseLoopStop

        with connect(pulsectl, "dictated-system-audio") as pulse:
            self._pulse = pulse
            try:
                pulse.event_mask_set("server")
                pulse.event_callback_set(on_event)
                self._report(default_output(pulse), None)
                while not self._stop.is_set():
                    pulse.event_listen(timeout=1.0)
                    if changed.is_set():
                        changed.clear()
                        self._report(default_output(pulse), None)
            finally:
                self._pulse = None


class Parec:
    """One parec process recording a monitor source into a pipe."""

    def __init__(self, process: asyncio.subprocess.Process, output: Output):
        self.process = process
        self.output = output
        self.stopping = False  # stopped on purpose: its end is not a fault

    @classmethod
    async def start(cls, output: Output) -> Parec:
        argv = [
            parec_path(),
            f"--device={output.monitor}",
            "--format=s16le",
            f"--rate={SAMPLE_RATE}",
            "--channels=1",
            "--raw",
            f"--latency-msec={CHUNK_MS}",
            "--client-name=dictated",
            "--stream-name=system audio",
        ]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Ctrl-C at a terminal reaches the daemon, which stops parec itself; parec must not
            # end first and pass for a lost stream. A killed daemon's parec dies of SIGPIPE.
            start_new_session=True,
        )
        return cls(process, output)

    async def read(self, timeout_s: float) -> bytes:
        """Up to one chunk; b"" at its end; TimeoutError when it delivers nothing for that long."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            return await self.process.stdout.read(CHUNK_BYTES)

    def terminate(self) -> None:
        self.stopping = True
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()

    async def wait(self) -> str:
        """Wait for its exit (killing it if it hangs); what it said, for a message."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        assert self.process.stderr is not None
        said = (await self.process.stderr.read(STDERR_LIMIT)).decode(errors="replace").strip()
        return said or f"parec exited with status {self.process.returncode}"

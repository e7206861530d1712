"""A real PulseAudio server for a test: null sinks as outputs, their monitors as what they played.

`PulseServer` runs Debian's `pulseaudio` in the foreground with its own runtime directory (the
socket `native`, its cookie and state), so it never meets a desktop's server, and exports
`PULSE_SERVER`/`PULSE_RUNTIME_PATH` for the code under test and the child processes it starts.
`play()` plays a WAV with `paplay -d SINK` (a real client stream, paced by the server);
`set_default()` switches the default output like a desktop's sound settings do. Root works
(pulseaudio warns and runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 10.0


def missing_reason() -> str | None:
    """Why a PulseAudio server cannot be run here, or None."""
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt install pulseaudio pulseaudio-utils)"
    try:
        import pulsectl  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"pulsectl cannot be loaded: {exc}"
    return None


class PulseServer:
    """One running server; `env` reaches it (also for subprocesses)."""

    def __init__(self, runtime: Path, process: subprocess.Popen, log: Path):
        self.runtime = runtime
        self.process = process
        self.log = log
        self.socket = runtime / "native"
        self.env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(runtime),
            "PULSE_STATE_PATH": str(runtime / "state"),
        }

    def pactl(self, *args: str) -> str:
        done = subprocess.run(
            ["pactl", *args], env={**os.environ, **self.env}, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"pactl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def set_default(self, sink: str) -> None:
        self.pactl("set-default-sink", sink)

    def default_sink(self) -> str:
        return self.pactl("get-default-sink").strip()

    def play(self, wav: Path, sink: str | None) -> subprocess.Popen:
        """Start playing `wav` into `sink` (returns at once; wait() on it for the end). None:
        the default output, followed when it changes (the server moves the stream)."""
        device = [] if sink is None else [f"--device={sink}"]
        return subprocess.Popen(["paplay", *device, str(wav)], env={**os.environ, **self.env})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(runtime: Path, sinks: tuple[str, ...]) -> PulseServer:
    """Start a server in `runtime` with a null sink per name (the first is the default)."""
    runtime.mkdir(parents=True, exist_ok=True)
    log = runtime / "pulseaudio.log"
    env = {**os.environ, "HOME": str(runtime), "XDG_CONFIG_HOME": str(runtime / "config")}
    argv = [
        "pulseaudio",
        "--daemonize=no",
        "-n",  # no default.pa: only the modules named here
        "--load=module-native-protocol-unix",
        *(f"--load=module-null-sink sink_name={name}" for name in sinks),
        "--exit-idle-time=-1",
        "--use-pid-file=no",
        "--log-target=stderr",
    ]
    env.pop("PULSE_SERVER", None)  # the server itself listens at PULSE_RUNTIME_PATH/native
    env.update(PULSE_RUNTIME_PATH=str(runtime), PULSE_STATE_PATH=str(runtime / "state"))
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = PulseServer(runtime, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"pulseaudio exited: {log.read_text(errors='replace')[-2000:]}")
        if server.socket.exists():
            try:
                server.set_default(sinks[0])
                return server
            except RuntimeError:
                pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"pulseaudio did not come up: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def running(sinks: tuple[str, ...] = ("speakers",)) -> Iterator[PulseServer]:
    """A server for the block, its environment exported to this process, all undone after."""
    with tempfile.TemporaryDirectory(prefix="dictated-pulse-") as tmp:
        server = start(Path(tmp), sinks)
        saved = {key: os.environ.get(key) for key in server.env}
        os.environ.update(server.env)
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            server.stop()

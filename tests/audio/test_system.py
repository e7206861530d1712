"""The `system` source on Linux against a real PulseAudio server (tests/pulse.py): speech played
into the default output is what the source delivers; a new default output is followed; a server
that is not there, or goes away, is said plainly. The daemon end to end is in test_system_daemon.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dictated.audio.format import SAMPLE_RATE
from dictated.errors import AudioError
from tests import pulse, speech

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="PulseAudio monitors are Linux's"),
    pytest.mark.skipif(pulse.missing_reason() is not None, reason=str(pulse.missing_reason())),
]


def _wav(tmp_path: Path, name: str, pcm: np.ndarray) -> Path:
    path = tmp_path / f"{name}.wav"
    soundfile.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
    return path


def _match(captured: np.ndarray, clip: np.ndarray) -> float:
    """Normalised cross-correlation peak of `clip` inside `captured` (1.0: found unchanged)."""
    a = captured.astype(np.float64)
    b = clip.astype(np.float64)
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[: len(a)]
    lag = int(np.argmax(corr))
    window = a[lag : lag + len(b)]
    if len(window) < len(b):
        return 0.0
    return float(corr[lag] / (np.linalg.norm(window) * np.linalg.norm(b) + 1e-9))


TAIL_S = 0.5  # see Played


class Played:
    """True once the player has exited and TAIL_S more audio was captured: paplay exits when the
    sink has played its last sample, and the monitor hands that sample over up to a fragment
    later, so stopping (or switching) at the exit could cut the clip's end."""

    def __init__(self) -> None:
        self._exit_s: float | None = None

    def __call__(self, player: subprocess.Popen | None, seconds: float) -> bool:
        if player is None or player.poll() is None:
            return False
        if self._exit_s is None:
            self._exit_s = seconds
        return seconds >= self._exit_s + TAIL_S


async def _capture(source, until, timeout_s: float = 30.0, states: list | None = None):
    """Blocks from `source` until `until(seconds_captured)` says stop: the audio, the gaps the
    source declared, and how far stream time (samples + gaps) drifted from the wall clock."""
    if states is not None:
        source.on_device_state = lambda state, detail: states.append((state, detail))
    pcm: list[np.ndarray] = []
    gaps = 0.0
    first_at = last_at = None
    try:
        async with asyncio.timeout(timeout_s), contextlib.aclosing(source.blocks()) as blocks:
            async for block in blocks:
                assert block.pcm.dtype == np.int16 and block.pcm.ndim == 1
                if first_at is None:
                    first_at = block.captured_at
                else:
                    gaps += block.gap_s
                pcm.append(block.pcm)
                last_at = block.captured_at
                if await until(sum(map(len, pcm)) / SAMPLE_RATE):
                    break
    finally:
        await source.aclose()
    stream_s = sum(map(len, pcm[1:])) / SAMPLE_RATE + gaps
    return np.concatenate(pcm), gaps, abs(stream_s - (last_at - first_at))


def test_captures_what_the_default_output_plays(tmp_path):
    from dictated.audio.open_source import open_source

    clip = speech.synthesize(speech.SENTENCES[0])
    wav = _wav(tmp_path, "speech", np.concatenate([speech.silence(0.3), clip]))
    with pulse.running(("speakers",)) as server:
        source = open_source("system")
        assert source.realtime and source.device == "speakers.monitor"
        states: list = []
        player: list[subprocess.Popen] = []
        played = Played()

        async def until(seconds: float) -> bool:
            if not player and seconds >= 0.5:  # the stream is up: play now
                player.append(server.play(wav, "@DEFAULT_SINK@"))
            return bool(player) and played(player[0], seconds) and seconds > 1.0

        captured, gaps, drift = asyncio.run(_capture(source, until, states=states))
    assert player[0].returncode == 0
    assert states[0][0] == "ok"
    assert _match(captured, clip) > 0.9, "the played speech is not in the captured audio"
    assert drift < 0.5, "stream time must stay the capture timeline"


def test_follows_a_new_default_output(tmp_path):
    from dictated.audio.system import SystemSource

    first = speech.synthesize(speech.SENTENCES[1])
    second = speech.synthesize(speech.SENTENCES[2])
    wav_first, wav_second = _wav(tmp_path, "first", first), _wav(tmp_path, "second", second)
    with pulse.running(("speakers", "headset")) as server:
        source = SystemSource()
        states: list = []
        steps: dict[str, subprocess.Popen | float] = {}
        first_played, second_played = Played(), Played()

        async def until(seconds: float) -> bool:
            if "first" not in steps:
                if seconds >= 0.5:
                    steps["first"] = server.play(wav_first, "speakers")
            elif "switched" not in steps and first_played(steps["first"], seconds):
                server.set_default("headset")  # a headset plugged in: the new default output
                steps["switched"] = time.monotonic()
            elif "second" not in steps and source.device == "headset.monitor":
                steps["second"] = server.play(wav_second, "headset")
            return second_played(steps.get("second"), seconds)

        captured, gaps, drift = asyncio.run(_capture(source, until, timeout_s=40, states=states))
    assert source.description == "system:headset"
    assert _match(captured, first) > 0.9, "speech before the switch is missing"
    assert _match(captured, second) > 0.9, "speech on the new default output is missing"
    assert [state for state, _ in states] == ["ok"], "a switch is not a loss"
    print(f"gap at the switch: {gaps:.2f} s")
    assert drift < 0.5, "stream time must stay the capture timeline"


def test_a_stream_moved_to_the_new_default_is_heard_across_the_switch(tmp_path):
    """A desktop moves what is playing to the new default output: the speech goes on there, and
    the source follows it. PulseAudio itself drops the moved stream's buffered audio (about the
    player's 2 s buffer, also seen with two parecs on both monitors), so the figure is printed,
    and the speech before and after the switch must both be there."""
    from dictated.audio.system import SystemSource

    clip = np.concatenate([speech.synthesize(s) for s in speech.SENTENCES[4:6]])
    wav = _wav(tmp_path, "long", clip)
    with pulse.running(("speakers", "headset")) as server:
        source = SystemSource()
        steps: dict = {}
        played = Played()

        async def until(seconds: float) -> bool:
            if "player" not in steps:
                if seconds >= 0.5:  # no --device: the stream follows the default output
                    steps["player"] = server.play(wav, None)
                    steps["at"] = seconds
            elif "switched" not in steps and seconds >= steps["at"] + len(clip) / SAMPLE_RATE / 2:
                server.set_default("headset")
                steps["switched"] = True
            return played(steps.get("player"), seconds)

        captured, _, _ = asyncio.run(_capture(source, until, timeout_s=40))
    assert "switched" in steps and source.device == "headset.monitor"
    lost = _missing_samples(captured, clip)
    print(f"audio missing across the switch: {lost / SAMPLE_RATE * 1000:.0f} ms")
    assert _match(captured, clip[: 2 * SAMPLE_RATE]) > 0.9, "speech before the switch is missing"
    assert _match(captured, clip[-2 * SAMPLE_RATE :]) > 0.9, "speech after the switch is missing"


def _missing_samples(captured: np.ndarray, clip: np.ndarray) -> int:
    """How much of `clip` is not in `captured`: align its first and last second, compare spans."""
    head, tail = clip[:SAMPLE_RATE], clip[-SAMPLE_RATE:]
    start = _lag(captured, head)
    end = _lag(captured, tail) + len(tail)
    return len(clip) - (end - start)


def _lag(captured: np.ndarray, piece: np.ndarray) -> int:
    a, b = captured.astype(np.float64), piece.astype(np.float64)
    size = 1 << (len(a) + len(b) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[: len(a)]
    return int(np.argmax(corr))


def test_no_sound_server_is_one_clear_error(tmp_path, monkeypatch):
    from dictated.audio.system import SystemSource

    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/no-server")
    with pytest.raises(AudioError) as caught:
        SystemSource()
    message = str(caught.value)
    assert "no PulseAudio/PipeWire sound server answers" in message
    assert f"unix:{tmp_path}/no-server" in message
    assert "pipewire-pulse" in message and "\n" not in message
    assert not caught.value.permanent, "a sound server may come up later: exit 1, not 2"


def test_no_sound_server_exits_1_from_the_cli(tmp_path, isolated_env):
    env = {**isolated_env, "PULSE_SERVER": f"unix:{tmp_path}/no-server"}
    done = run_system(env)
    assert done.returncode == 1, done.stderr
    assert "no PulseAudio/PipeWire sound server answers" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_goes_away_is_lost_then_back(tmp_path):
    from dictated.audio.system import SystemSource

    clip = speech.synthesize(speech.SENTENCES[3])
    wav = _wav(tmp_path, "after", clip)
    with pulse.running(("speakers",)) as server:
        source = SystemSource(backoff_s=(0.2,))
        states: list = []
        steps: dict = {}
        played = Played()

        async def until(seconds: float) -> bool:
            if "killed" not in steps and seconds >= 0.5:
                server.stop()  # the sound server crashes (or the user logs out of it)
                steps["killed"] = True
                await asyncio.sleep(0.5)
                # back at the same socket, as a restarted sound server is
                steps["again"] = pulse.start(server.runtime, ("speakers",))
            if "again" in steps and "player" not in steps and source.device_state == "ok":
                steps["player"] = steps["again"].play(wav, "speakers")
            return played(steps.get("player"), seconds)

        try:
            captured, gaps, drift = asyncio.run(
                _capture(source, until, timeout_s=40, states=states)
            )
        finally:
            if "again" in steps:
                steps["again"].stop()
    assert [state for state, _ in states] == ["ok", "lost", "ok"], states
    assert "went away" in states[1][1] or "ended" in states[1][1]
    assert _match(captured, clip) > 0.9, "speech after the server came back is missing"
    assert gaps > 0.4, "the time without a server is a gap in the timeline"
    assert drift < 0.5, "stream time must stay the capture timeline"


def test_doctor_checks_the_sound_server(tmp_path, monkeypatch):
    from dictated.doctor.audio import check_system_audio

    with pulse.running(("speakers",)):
        result = check_system_audio()
    assert result.status == "ok", result
    assert result.details["monitor"] == "speakers.monitor"
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/no-server")
    result = check_system_audio()
    assert result.status == "fail"
    assert "pipewire-pulse" in (result.fix or "")


def test_pause_stops_recording_and_resume_starts_again(tmp_path):
    """suspend() ends the recording stream on the server (nothing is captured while paused);
    resume() records again and says so through the device state."""
    from dictated.audio.system import SystemSource

    clip = speech.synthesize(speech.SENTENCES[7])
    wav = _wav(tmp_path, "after-pause", clip)
    with pulse.running(("speakers",)) as server:
        source = SystemSource()
        states: list = []
        steps: dict = {}
        played = Played()

        def recording() -> int:
            return len(server.pactl("list", "short", "source-outputs").splitlines())

        async def until(seconds: float) -> bool:
            if "paused" not in steps and seconds >= 0.5:
                steps["recording_before"] = recording()
                await source.suspend()
                await asyncio.sleep(1.0)
                steps["paused"] = recording()
                await source.resume()
            elif "paused" in steps and "player" not in steps and states[-1][0] == "ok":
                steps["player"] = server.play(wav, "speakers")
            return played(steps.get("player"), seconds)

        captured, gaps, drift = asyncio.run(_capture(source, until, timeout_s=40, states=states))
    assert steps["recording_before"] == 1 and steps["paused"] == 0
    assert [state for state, _ in states] == ["ok", "closed", "ok"], states
    assert _match(captured, clip) > 0.9, "speech after resume is missing"
    assert gaps > 0.9, "the paused second is a gap in the timeline"
    assert drift < 0.5, "stream time must stay the capture timeline"


def test_no_parec_names_the_package_and_exits_2(tmp_path, isolated_env):
    env = {**isolated_env, "PATH": str(tmp_path)}  # no parec on it
    done = run_system(env)
    assert done.returncode == 2, done.stderr
    assert "sudo apt install pulseaudio-utils" in done.stderr


def test_doctor_checks_system_audio_among_several_sources(tmp_path, isolated_env):
    """`[audio] sources` with a system channel and no mic: the sound server is checked, the
    microphone is not (a machine without one must not fail the doctor for it)."""
    import json

    config = tmp_path / "config.toml"
    config.write_text('[audio]\nsources = ["them=system", "file:talk.wav"]\n')
    with pulse.running(("speakers",)) as server:
        env = {**isolated_env, **server.env}
        done = subprocess.run(
            [sys.executable, "-m", "dictated", "doctor", "--json", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["system audio"]["status"] == "ok", checks["system audio"]
    assert checks["system audio"]["details"]["monitor"] == "speakers.monitor"
    assert checks["microphone"]["status"] == "skip"


def test_no_libpulse_names_the_package_and_exits_2(tmp_path, isolated_env):
    """libpulse absent (a machine with no sound stack): pulsectl fails to load it at import.
    Stood in for by refusing to load any libpulse in the child, as the dynamic loader would."""
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes\n"
        "_real = ctypes.CDLL.__init__\n"
        "def _init(self, name, *a, **k):\n"
        "    if name and 'pulse' in str(name):\n"
        "        raise OSError(f'{name}: cannot open shared object file')\n"
        "    _real(self, name, *a, **k)\n"
        "ctypes.CDLL.__init__ = _init\n"
    )
    env = {**isolated_env, "PYTHONPATH": str(tmp_path)}
    done = run_system(env)
    assert done.returncode == 2, done.stderr
    assert "sudo apt install libpulse0" in done.stderr


def run_system(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`dictated run --source system` as a user starts it, to its exit."""
    return subprocess.run(
        [sys.executable, "-m", "dictated", "run", "--source", "system", "--engine", "whisper"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

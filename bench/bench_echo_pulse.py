"""The OS echo canceller (PulseAudio's module-echo-cancel, WebRTC) on the meeting of bench_echo.py.

A private PulseAudio server (its own runtime directory; Debian's `pulseaudio`) with two null sinks:
`speakers` (where the canceller's sink plays the other side: its reference) and `room` (where the
mic track, already holding the other side's room echo, is played: the canceller's microphone).
The other side goes into the canceller's sink and the mic track into `room` at the same moment;
the cancelled microphone is recorded, aligned to the mic track, transcribed by Whisper and replayed
through the daemon's own suppressor. Reported: the other side's sentences repeated on the mic and
the user's WER, for the canceller alone and the canceller plus the suppressor, with the
canceller's defaults and with its gain control and noise suppression off. Real time: ~45 s a row.

This is a simulation: a real laptop's reference and microphone share one clock, here two
playback streams start together within a few ms. Take the figures as indicative.

    .venv/bin/python bench/bench_echo_pulse.py [--level -10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_table

from dictated.engines import EngineOptions, create_engine
from tests.echo_replay import echoes_of, replay, transcribe_track, wer
from tests.meeting_audio import build_meeting, write_wav

VARIANTS = {
    "webrtc defaults": "",
    "webrtc, no AGC/NS": "analog_gain_control=0 digital_gain_control=0 noise_suppression=0",
}


def _start_pulse(root: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {**os.environ, "HOME": str(root), "PULSE_RUNTIME_PATH": str(root / "run")}
    env["XDG_RUNTIME_DIR"] = env["PULSE_RUNTIME_PATH"]
    (root / "run").mkdir(mode=0o700)
    sinks = [
        f"--load=module-null-sink sink_name={n} rate=16000 channels=1" for n in ("speakers", "room")
    ]
    proc = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--use-pid-file=no",
         "--load=module-native-protocol-unix", *sinks],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            return proc, env
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("pulseaudio did not start (apt-get install pulseaudio)")


def _cancelled(env: dict[str, str], aec_args: str, system: Path, mic: Path, out: Path) -> None:
    module = ["pactl", "load-module", "module-echo-cancel", "source_master=room.monitor",
              "sink_master=speakers", "aec_method=webrtc", "source_name=ec_src",
              "sink_name=ec_sink", "rate=16000", "channels=1"]  # fmt: skip
    if aec_args:
        module.append(f'aec_args="{aec_args}"')
    subprocess.run(module, env=env, check=True, capture_output=True)
    fmt = ["--rate=16000", "--channels=1", "--format=s16le", "--latency-msec=20"]
    with out.open("wb") as f:
        rec = subprocess.Popen(["parec", "-d", "ec_src", *fmt], env=env, stdout=f)
        time.sleep(1.0)
        plays = [
            subprocess.Popen(["paplay", "-d", sink, "--latency-msec=20", str(path)], env=env)
            for sink, path in (("ec_sink", system), ("room", mic))
        ]
        for p in plays:
            p.wait()
        time.sleep(1.0)
        rec.terminate()
        rec.wait()
    subprocess.run(["pactl", "unload-module", "module-echo-cancel"], env=env, check=True)


def _aligned(recorded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`recorded` shifted onto `reference` by the lag (10 ms steps, ≤ 3 s) of best envelope match."""

    def envelope(x: np.ndarray) -> np.ndarray:
        n = len(x) // 160
        return np.abs(x[: n * 160].astype(np.float64)).reshape(n, 160).mean(1)

    er, ef = envelope(recorded), envelope(reference)
    lags = range(min(300, max(1, len(er) - 1)))
    lag = max(lags, key=lambda k: float(np.dot(er[k : k + len(ef)], ef[: len(er) - k])))
    out = recorded[lag * 160 : lag * 160 + len(reference)]
    return np.pad(out, (0, len(reference) - len(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--level", type=float, default=-10.0, help="echo level, dB")
    args = parser.parse_args()
    if shutil.which("pulseaudio") is None:
        raise SystemExit("needs pulseaudio, pactl, parec, paplay: apt-get install pulseaudio")
    meeting = build_meeting(echo_db=args.level)
    engine = create_engine("whisper", EngineOptions())
    root = Path(tempfile.mkdtemp(prefix="bench-echo-pulse-"))
    system_wav, mic_wav = (
        write_wav(root / "s.wav", meeting.system),
        write_wav(root / "m.wav", meeting.mic),
    )
    system = transcribe_track(system_wav, engine)
    far = [s.text for s in meeting.far]
    proc, env = _start_pulse(root)
    rows = []
    try:
        for name, aec_args in VARIANTS.items():
            raw = root / f"{len(rows)}.raw"
            _cancelled(env, aec_args, system_wav, mic_wav, raw)
            pcm = _aligned(np.frombuffer(raw.read_bytes(), dtype=np.int16), meeting.mic)
            mic = transcribe_track(write_wav(root / f"{len(rows)}.wav", pcm), engine)
            texts = [u.transcript.text for u in mic]
            both = replay({"system": system, "mic": mic}).published("mic")
            rows.append(
                [name, echoes_of(far, texts), wer(meeting.near_text, " ".join(texts)),
                 echoes_of(far, both), wer(meeting.near_text, " ".join(both))]
            )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print_table(
        f"PulseAudio module-echo-cancel, echo at {args.level:+.0f} dB (4 sentences theirs, 5 yours)",
        ["canceller", "dups", "your WER", "dups + suppressor", "your WER + suppressor"],
        rows,
    )


if __name__ == "__main__":
    main()

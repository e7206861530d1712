"""CPU the daemon spends on silence (capture + VAD + event loop), scaled to one hour of audio.

Runs the real daemon on quiet room noise and reads its CPU time from /proc between `ready` and the
end, so model loading is not counted: the run time of all its threads in nanoseconds
(/proc/PID/task/*/schedstat), not the 10 ms ticks of /proc/PID/stat, which at a fraction of a
percent are too coarse to compare two paths. Capture paths:
- `mic`: real PortAudio capture from an ALSA device that reads a pipe this script fills in real
  time (no sound card needed; see tests/alsa.py), i.e. what `dictated run` costs all day; once
  as it runs by default (while nobody speaks, four PortAudio blocks per event-loop wakeup,
  `audio.idle_block_ms = 480`) and once handing over every block (`idle_block_ms = 120`, the
  path before idle batching), in the same run;
- `file`: a WAV paced like a microphone (`--realtime`).
The microphone rows run the default `segmenter.vad = "silero"` (Silero sleeps until webrtcvad and
the energy gate pass a frame, so silence should cost what webrtcvad alone does); one more row runs
`vad = "webrtc"` for the comparison. The reference, in this process, is bare webrtcvad over the
same number of 30 ms frames.
Target: <= 0.5 % of one core (18 CPU-seconds per hour). Linux only (reads /proc). Usage:

    python bench/bench_idle_cpu.py [--seconds 60] [--noise-dbfs -70]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import soundfile
from _common import REPO, isolated_env, print_table


def cpu_seconds(pid: int) -> float:
    """CPU time of the process's live threads, to the nanosecond."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return total / 1e9


def measure(args: list[str], env: dict[str, str], seconds: float) -> tuple[float, float]:
    """(daemon CPU seconds, wall seconds) over `seconds` after the daemon reports ready."""
    from dictated.clients.control import ControlClient, DaemonUnavailable
    from dictated.protocol import CONTROL_SOCKET, default_endpoint

    cmd = [
        sys.executable,
        "-m",
        "dictated",
        "run",
        *args,
        "--engine",
        "whisper",
        "--linger",
        "0",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    control = ControlClient(
        default_endpoint(CONTROL_SOCKET, env["DICTATED_RUNTIME_DIR"]), timeout_s=0.5
    )
    while True:
        try:
            if control.request("status")["state"] == "ready":
                break
        except DaemonUnavailable:
            time.sleep(0.05)
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    return cpu1 - cpu0, wall1 - wall0


def via_mic(
    pcm: np.ndarray, seconds: float, idle_block_ms: int, vad: str = "silero"
) -> tuple[float, float]:
    from tests import alsa

    tmp = Path(tempfile.mkdtemp(prefix="dictated-bench-mic-"))
    config = tmp / "config.toml"
    config.write_text(f'[audio]\nidle_block_ms = {idle_block_ms}\n[segmenter]\nvad = "{vad}"\n')
    fifo = tmp / "mic.fifo"
    os.mkfifo(fifo)
    asound = alsa.write_config(
        tmp / "asound.conf", [alsa.fifo_capture("benchmic", fifo)], default="benchmic"
    )
    fd = os.open(fifo, os.O_RDWR)
    running = threading.Event()
    running.set()

    def room() -> None:  # the microphone: 100 ms of room noise every 100 ms, in real time
        t0, n, chunk = time.monotonic(), 0, 1600
        while running.is_set():
            os.write(fd, pcm[(n * chunk) % (len(pcm) - chunk) :][:chunk].tobytes())
            n += 1
            time.sleep(max(0.0, t0 + n * 0.1 - time.monotonic()))

    threading.Thread(target=room, daemon=True).start()
    try:
        return measure(
            ["--config", str(config), "--source", "mic", "--input-device", "benchmic"],
            {**isolated_env(), "ALSA_CONFIG_PATH": str(asound)},
            seconds,
        )
    finally:
        running.clear()
        os.close(fd)


def via_file(pcm: np.ndarray, seconds: float) -> tuple[float, float]:
    from dictated.audio.format import SAMPLE_RATE

    env = isolated_env()
    wav = f"{env['XDG_DATA_HOME']}-silence.wav"
    soundfile.write(wav, pcm, SAMPLE_RATE, subtype="PCM_16")
    return measure(["--source", f"file:{wav}", "--realtime"], env, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--noise-dbfs", type=float, default=-70.0, help="room noise level")
    args = parser.parse_args()

    import webrtcvad

    from dictated.audio.format import FRAME_BYTES, SAMPLE_RATE

    rng = np.random.default_rng(0)
    n = int((args.seconds + 30) * SAMPLE_RATE)
    level = 32768 * 10 ** (args.noise_dbfs / 20)
    pcm = np.clip(rng.normal(0, level, n), -32768, 32767).astype("<i2")

    vad = webrtcvad.Vad(2)
    data = pcm[: int(args.seconds * SAMPLE_RATE)].tobytes()
    started = time.process_time()
    for offset in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES):
        vad.is_speech(data[offset : offset + FRAME_BYTES], SAMPLE_RATE)
    vad_share = (time.process_time() - started) / args.seconds  # CPU s per audio s

    from dictated.audio.mic_stream import BLOCK_MS, IDLE_BLOCK_MS

    shares = {}
    for name, run in (
        (
            f"daemon, microphone, idle batching ({IDLE_BLOCK_MS} ms)",
            partial(via_mic, idle_block_ms=IDLE_BLOCK_MS),
        ),
        (
            f"daemon, microphone, every block ({BLOCK_MS} ms, old path)",
            partial(via_mic, idle_block_ms=BLOCK_MS),
        ),
        (
            "daemon, microphone, idle batching, webrtcvad alone (vad = webrtc)",
            partial(via_mic, idle_block_ms=IDLE_BLOCK_MS, vad="webrtc"),
        ),
        ("daemon, file --realtime", via_file),
    ):
        cpu, wall = run(pcm, args.seconds)
        shares[name] = cpu / wall
    old = next(v for k, v in shares.items() if "old path" in k)
    rows = [
        [name, share * 3600, 100 * share, share / vad_share, share / old]
        for name, share in shares.items()
    ]
    rows.append(
        ["reference: bare webrtcvad", vad_share * 3600, 100 * vad_share, 1.0, vad_share / old]
    )
    print_table(
        f"CPU on {args.seconds:.0f} s of room noise at {args.noise_dbfs:.0f} dBFS, scaled to 1 h "
        "(target <= 18 s/h = 0.5 % of a core)",
        ["what", "cpu s/hour", "% of a core", "ratio to webrtcvad", "ratio to old path"],
        rows,
    )


if __name__ == "__main__":
    main()

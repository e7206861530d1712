"""CPU the daemon spends on silence (capture + VAD + event loop), scaled to one hour of audio.

Runs the real daemon on silent audio paced like a microphone (`--realtime`) and reads its CPU time
from /proc between `ready` and the end of the audio, so model loading is not counted. The
reference, in this process, is bare webrtcvad over the same number of 30 ms frames. Target:
<= 0.5 % of one core (18 CPU-seconds per hour). Linux only (reads /proc). Usage:

    python bench/bench_idle_cpu.py [--seconds 60] [--noise-dbfs -70]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import soundfile
from _common import REPO, isolated_env, print_table


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--noise-dbfs", type=float, default=-70.0, help="room noise level (None-like: -200)"
    )
    args = parser.parse_args()

    import webrtcvad

    from dictated.audio.format import FRAME_BYTES, SAMPLE_RATE
    from dictated.clients.control import ControlClient, DaemonUnavailable
    from dictated.protocol import CONTROL_SOCKET, default_endpoint

    rng = np.random.default_rng(0)
    n = int(args.seconds * SAMPLE_RATE)
    level = 32768 * 10 ** (args.noise_dbfs / 20)
    pcm = np.clip(rng.normal(0, level, n), -32768, 32767).astype(np.int16)
    env = isolated_env()
    wav = f"{env['XDG_DATA_HOME']}-silence.wav"
    soundfile.write(wav, pcm, SAMPLE_RATE, subtype="PCM_16")

    cmd = [
        sys.executable,
        "-m",
        "dictated",
        "run",
        "--source",
        f"file:{wav}",
        "--realtime",
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
    last = (cpu0, wall0)
    while proc.poll() is None:
        try:
            last = (cpu_seconds(proc.pid), time.monotonic())
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.5)
    daemon_cpu, wall = last[0] - cpu0, last[1] - wall0

    vad = webrtcvad.Vad(2)
    data = pcm.tobytes()
    started = time.process_time()
    for offset in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES):
        vad.is_speech(data[offset : offset + FRAME_BYTES], SAMPLE_RATE)
    vad_cpu = time.process_time() - started

    per_hour = 3600 / wall
    rows = [
        [
            "daemon (capture+VAD+loop)",
            daemon_cpu * per_hour,
            100 * daemon_cpu / wall,
            daemon_cpu / max(vad_cpu * wall / args.seconds, 1e-9),
        ],
        [
            "reference: bare webrtcvad",
            vad_cpu * 3600 / args.seconds,
            100 * vad_cpu / args.seconds,
            1.0,
        ],
    ]
    print_table(
        f"CPU on {wall:.0f} s of silent audio at {args.noise_dbfs:.0f} dBFS, scaled to 1 h (target <= 18 s/h = 0.5 % core)",
        ["what", "cpu s/hour", "% of a core", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()

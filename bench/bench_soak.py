"""Soak: hours of speech through the real daemon as fast as it goes; does memory stay flat?

The daemon reads raw audio on stdin (`--source -`): espeak-ng sentences (tests/speech.py) with
pauses between them, looped until `--hours` of audio have been fed. The worker's bounded queue
pushes back on the pipe, so the daemon holds at most a few utterances at a time and any growth of
its resident memory is a leak, not a backlog. RSS and CPU are read from /proc at every transcript
(a subscriber on a tcp endpoint counts them; the journal is checked at the end for the exact count).

The reference, in this process, is the engine alone (faster-whisper) transcribing one loop's
utterances, found by the same segmenter: the ratio is what the daemon costs on top. Goal: RSS
growth from start to end <= 5 %. Linux only (reads /proc). Usage:

    python bench/bench_soak.py [--hours 1.0] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from _common import REPO, cpu_seconds, isolated_env, print_table


@dataclass(frozen=True)
class Sample:
    """The daemon's footprint when a transcript arrived."""

    audio_s: float  # stream position of that transcript's end of speech
    wall_s: float  # since the daemon was ready
    rss_mb: float  # resident now: between two utterances, the engine's buffers released
    peak_mb: float  # VmHWM: the most it was ever resident, inference buffers included
    cpu_s: float  # since the daemon was ready


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(line.split()[1]) / 1024
    if len(found) != 2:
        raise RuntimeError(f"no VmRSS/VmHWM for pid {pid}")
    return found["VmRSS"], found["VmHWM"]


def reference_cpu_per_hour(pcm, seconds: float) -> float:
    """CPU seconds per audio hour of the segmenter + engine alone, in this process."""
    from dictated.audio.format import int16_to_float32
    from dictated.engines import EngineOptions, create_engine
    from dictated.events import UtteranceEnded
    from dictated.segmenter import Segmenter, SegmenterOptions

    engine = create_engine("whisper", EngineOptions())
    engine.warmup()
    started = time.process_time()
    segmenter = Segmenter(SegmenterOptions())
    for event in segmenter.push(pcm) + segmenter.flush():
        if isinstance(event, UtteranceEnded):
            engine.transcribe(int16_to_float32(event.utterance.pcm), "en")
    used = time.process_time() - started
    engine.close()
    return used * 3600 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0, help="audio to feed (default 1 h)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between sentences")
    args = parser.parse_args()

    from dictated.audio.format import SAMPLE_RATE
    from tests.speech import SENTENCES, compose

    loop = compose(SENTENCES, args.pause, lead_s=0.5, tail_s=1.0)
    loop_s = len(loop.pcm) / SAMPLE_RATE
    loops = math.ceil(args.hours * 3600 / loop_s)
    total_s = loops * loop_s
    expected = loops * len(SENTENCES)
    data = loop.pcm.astype("<i2").tobytes()

    env = isolated_env()
    journal = Path(env["XDG_DATA_HOME"]) / "soak-journal.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"transcript")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(f"tcp://127.0.0.1:{port}")
    cmd = [
        sys.executable,
        "-m",
        "dictated",
        "run",
        "--source",
        "-",
        "--engine",
        "whisper",
        "--pub",
        f"tcp://127.0.0.1:{port}",
        "--journal",
        str(journal),
        "--linger",
        "0.5",
        "--log-level",
        "error",  # "queue full" warnings are the point here: the daemon pushes back on the pipe
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdin=subprocess.PIPE)
    from dictated.clients.control import ControlClient, DaemonUnavailable
    from dictated.protocol import CONTROL_SOCKET, default_endpoint

    control = ControlClient(
        default_endpoint(CONTROL_SOCKET, env["DICTATED_RUNTIME_DIR"]), timeout_s=0.5
    )
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode} before it was ready")
        try:
            if control.request("status")["state"] == "ready":
                break
        except DaemonUnavailable:
            time.sleep(0.1)
    ready_wall, ready_cpu = time.monotonic(), cpu_seconds(proc.pid)
    ready_rss, ready_peak = memory_mb(proc.pid)

    def feed() -> None:  # blocks whenever the daemon's queue is full: it pushes back
        try:
            for _ in range(loops):
                proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    samples: list[Sample] = []
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    next_report = 0.1
    while proc.poll() is None:
        if not poller.poll(1000):
            continue
        _topic, body = sub.recv_multipart()
        event = json.loads(body)
        try:
            sample = Sample(
                event["stream_end"],
                time.monotonic() - ready_wall,
                *memory_mb(proc.pid),
                cpu_seconds(proc.pid) - ready_cpu,
            )
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            break  # exited between the event and the read
        samples.append(sample)
        if sample.audio_s >= next_report * total_s:
            print(
                f"  {sample.audio_s / 60:6.1f} of {total_s / 60:.0f} audio min, "
                f"{sample.wall_s / 60:5.1f} wall min, RSS {sample.rss_mb:.1f} MB",
                flush=True,
            )
            next_report += 0.1
    proc.wait()
    journaled = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    transcripts = [r for r in journaled if r["topic"] == "transcript"]
    errors = [r for r in journaled if r["topic"] == "error"]

    ref = reference_cpu_per_hour(loop.pcm, loop_s)
    first, last = samples[0], samples[-1]
    middle = min(samples, key=lambda s: abs(s.audio_s - total_s / 2))
    tenth = min(samples, key=lambda s: abs(s.audio_s - total_s / 10))
    rows = [["ready (engine loaded)", 0.0, ready_rss, ready_rss / first.rss_mb, ready_peak]]
    rows += [
        [when, s.audio_s / 60, s.rss_mb, s.rss_mb / first.rss_mb, s.peak_mb]
        for when, s in (
            ("start (first transcript)", first),
            ("10 % of the audio", tenth),
            ("middle", middle),
            ("end (last transcript)", last),
        )
    ]
    print_table(
        f"RSS over {total_s / 3600:.2f} h of speech ({loops} loops of {loop_s:.0f} s, "
        f"{len(transcripts)}/{expected} transcripts, {len(errors)} errors, exit {proc.returncode})",
        ["when", "audio min", "RSS MB", "ratio to start", "peak so far MB"],
        rows,
    )
    growth = 100 * (last.rss_mb / first.rss_mb - 1)
    growth_warm = 100 * (last.rss_mb / tenth.rss_mb - 1)
    peak_growth = 100 * (last.peak_mb / tenth.peak_mb - 1)
    print(
        f"RSS growth start -> end: {growth:+.1f} % (10 % -> end: {growth_warm:+.1f} %; "
        f"goal <= 5 %); peak (VmHWM) 10 % -> end: {peak_growth:+.1f} %"
    )
    daemon_per_hour = last.cpu_s * 3600 / last.audio_s
    print_table(
        f"CPU per audio hour (wall {last.wall_s / 60:.1f} min, "
        f"{last.audio_s / last.wall_s:.1f}x real time)",
        ["what", "cpu s per audio hour", "ratio"],
        [
            [
                "daemon (capture, VAD, engine, journal, publish)",
                daemon_per_hour,
                daemon_per_hour / ref,
            ],
            ["reference: segmenter + engine in this process", ref, 1.0],
        ],
    )
    sub.close(0)
    context.term()


if __name__ == "__main__":
    main()

"""Latency from end of speech to a subscriber receiving the transcript, split by stage.

Runs the real daemon on a multi-utterance espeak-ng recording paced like a microphone
(`--realtime`) and a real ZeroMQ subscriber. The reference, in the same run, is the engine alone:
faster-whisper transcribing the very same utterances in this process. Usage:

    python bench/bench_latency.py [--sentences 8] [--pause 1.2]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

import soundfile
import zmq
from _common import REPO, isolated_env, pct, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--pause", type=float, default=1.2)
    args = parser.parse_args()

    from dictated.audio.format import SAMPLE_RATE, int16_to_float32
    from dictated.engines import EngineOptions, create_engine
    from tests.speech import SENTENCES, compose

    signal = compose(SENTENCES[: args.sentences], args.pause)
    env = isolated_env()
    wav = f"{env['XDG_DATA_HOME']}-latency.wav"
    soundfile.write(wav, signal.pcm, SAMPLE_RATE, subtype="PCM_16")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"transcript")
    sub.connect(f"tcp://127.0.0.1:{port}")
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
        "--pub",
        f"tcp://127.0.0.1:{port}",
        "--linger",
        "0.5",
        "--log-level",
        "warning",
    ]
    print(
        f"running the daemon on {len(signal.pcm) / SAMPLE_RATE:.0f} s of speech in real time ...",
        flush=True,
    )
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    received = []
    while proc.poll() is None or sub.poll(100):
        if sub.poll(100):
            _, body = sub.recv_multipart()
            received.append((time.time(), json.loads(body)))
    context.destroy()

    # publish = everything after the engine until the subscriber has it: journal fsync, send, delivery
    stages = {"hangover": [], "queue": [], "engine": [], "publish": [], "total": []}
    for at, body in received:
        t = body["timings_ms"]
        total = (at - body["end"]) * 1000
        for key in ("hangover", "queue", "engine"):
            stages[key].append(t[key])
        stages["publish"].append(total - t["hangover"] - t["queue"] - t["engine"])
        stages["total"].append(total)

    engine = create_engine("whisper", EngineOptions())
    reference = []
    for spoken in signal.spoken:
        clip = int16_to_float32(signal.pcm[spoken.start_sample - 4800 : spoken.end_sample + 9600])
        started = time.perf_counter()
        engine.transcribe(clip, "en")
        reference.append((time.perf_counter() - started) * 1000)
    ref50 = pct(reference, 50)
    rows = [[k, len(v), pct(v, 50), pct(v, 95), pct(v, 50) / ref50] for k, v in stages.items()]
    rows.append(["reference: engine alone", len(reference), ref50, pct(reference, 95), 1.0])
    print_table(
        f"end of speech -> subscriber, {len(received)} utterances (ms; ratio = p50 / engine-alone p50)",
        ["stage", "n", "p50", "p95", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()

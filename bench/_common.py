"""Helpers shared by the benchmarks: isolated environments, percentiles, and table printing."""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so `tests.speech` (espeak-ng signals) imports from a checkout


def isolated_env() -> dict[str, str]:
    root = Path(tempfile.mkdtemp(prefix="dictated-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="db-", dir="/tmp"))
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "DICTATED_RUNTIME_DIR": str(runtime),
    }


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[str(h) for h in header]] + [
        [f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def normalise(text: str) -> str:
    """Lower case, punctuation gone: what WER is computed on."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def start_realtime_daemon(wav: str, env: dict[str, str], extra: list[str]):
    """`dictated run` on a file streamed in real time with the embedded Whisper engine, and a
    ZeroMQ subscriber to all its events, connected before it starts: (process, context, sub)."""
    import zmq

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    cmd = [
        *(sys.executable, "-m", "dictated", "run", "--source", f"file:{wav}", "--realtime"),
        *("--engine", "whisper", "--pub", f"tcp://127.0.0.1:{port}", "--linger", "0.5"),
        *("--log-level", "warning", *extra),
    ]
    return subprocess.Popen(cmd, env=env, cwd=REPO), context, sub


def interleaved_medians(fns, repeats: int) -> list[tuple[float, object]]:
    """Median ms of each function and its first result, run alternately so machine load hits
    them alike (the first call is the warm-up: first-use costs are not measured)."""
    results = [fn() for fn in fns]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            bucket.append((time.perf_counter() - start) * 1000.0)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def daemon_events(proc, sub):
    """(topic, arrival time, body) of each event until the daemon has exited and nothing is left."""
    while proc.poll() is None or sub.poll(100):
        if not sub.poll(100):
            continue
        topic, frame = sub.recv_multipart()
        yield topic, time.time(), json.loads(frame)

"""Load on one transcription server: N rooms (N real daemons, speech paced in real time) at once.

Each room is a real `dictated run --engine remote` process reading an espeak-ng recording with
`--realtime`, so utterances arrive as from a microphone; rooms start staggered and speak the
sentences in different orders, as independent rooms would. For N = 1, 2, 4, 8 (`--rooms`) it
reports the end-of-speech -> transcript latency (p50/p95, from each transcript's `latency_ms`)
and the server's throughput (audio seconds transcribed per wall second, first speech to last
transcript), each as a ratio against N = 1 in the same run; then the largest N again against two
replicas (each daemon given both URLs: least outstanding requests, ties rotated), to show what a
second replica buys. Without `--url` it starts vLLM's CPU build on the tests' tiny random Whisper
(tests/vllm_server.py), so the absolute numbers there say nothing about a GPU box; the shape does
(where latency starts to climb, and whether a second replica brings it back). Usage:

    python bench/bench_remote_load.py [--rooms 1 2 4 8] [--sentences 6]
    python bench/bench_remote_load.py --url http://gpu:8000/v1 [--url http://gpu2:8000/v1] --model M
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile
from _common import REPO, isolated_env, pct, print_table


@dataclass(frozen=True)
class RoomResult:
    latencies_ms: list[float]
    audio_s: float
    first_start: float
    last_publish: float
    errors: int


def make_recordings(rooms: int, sentences: int, pause_s: float, folder: Path) -> list[Path]:
    """One recording per room: rotated sentence order, staggered lead-in silence."""
    from dictated.audio.format import SAMPLE_RATE
    from tests.speech import SENTENCES, compose

    paths = []
    for room in range(rooms):
        order = [SENTENCES[(room + k) % len(SENTENCES)] for k in range(sentences)]
        lead = 0.5 + (room * 1.7) % 4.0  # uncorrelated-looking starts, reproducible
        signal = compose(order, pause_s, lead_s=lead, tail_s=1.5)
        path = folder / f"room-{room}.wav"
        soundfile.write(str(path), signal.pcm, SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def run_rooms(recordings: list[Path], urls: list[str], model: str | None) -> list[RoomResult]:
    flags = [arg for url in urls for arg in ("--remote-url", url)]
    if model:
        flags += ["--remote-model", model]
    procs = []
    for wav in recordings:
        env = isolated_env()
        journal = Path(env["XDG_DATA_HOME"]) / "journal.jsonl"
        cmd = [
            sys.executable, "-m", "dictated", "run", "--source", f"file:{wav}", "--realtime",
            "--engine", "remote", *flags, "--journal", str(journal), "--linger", "0",
            "--log-level", "warning",
        ]  # fmt: skip
        procs.append((subprocess.Popen(cmd, env=env, cwd=REPO), journal))
    results = []
    for proc, journal in procs:
        if proc.wait() != 0:
            raise SystemExit(f"a room's daemon exited with {proc.returncode}")
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        transcripts = [e["event"] for e in events if e["topic"] == "transcript"]
        results.append(
            RoomResult(
                latencies_ms=[t["latency_ms"] for t in transcripts],
                audio_s=sum(t["audio_s"] for t in transcripts),
                first_start=min((t["start"] for t in transcripts), default=float("nan")),
                last_publish=max(
                    (t["end"] + t["latency_ms"] / 1000 for t in transcripts), default=float("nan")
                ),
                errors=sum(1 for e in events if e["topic"] == "error"),
            )
        )
    return results


def summarise(label: str, rooms: int, results: list[RoomResult]) -> dict:
    latencies = [ms for r in results for ms in r.latencies_ms]
    wall = max(r.last_publish for r in results) - min(r.first_start for r in results)
    return {
        "label": label,
        "rooms": rooms,
        "utterances": len(latencies),
        "errors": sum(r.errors for r in results),
        "p50": pct(latencies, 50),
        "p95": pct(latencies, 95),
        "throughput": sum(r.audio_s for r in results) / wall,
    }


@contextlib.contextmanager
def tiny_servers(count: int):
    """`count` vLLM CPU servers on the tests' tiny random Whisper; their base URLs."""
    from tests.tiny_whisper import make_tiny_whisper_dir
    from tests.vllm_server import VllmServer

    folder = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    model = make_tiny_whisper_dir(folder / "model")
    servers = [
        VllmServer(model, "tiny-whisper", log_path=folder / f"vllm-{i}.log") for i in range(count)
    ]
    try:
        for server in servers:
            print(f"starting vLLM (CPU) on {server.base_url} ...", flush=True)
            server.start()
            print(f"  ready after {server.startup_s:.0f} s", flush=True)
        yield [s.base_url for s in servers]
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--sentences", type=int, default=6, help="utterances per room")
    parser.add_argument("--pause", type=float, default=1.2, help="seconds between sentences")
    parser.add_argument("--url", action="append", default=[], help="existing server(s); repeat")
    parser.add_argument(
        "--model", help="served model name (default tiny-whisper when started here)"
    )
    parser.add_argument("--no-replica-row", action="store_true", help="skip the 2-replica row")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-remote-audio-"))
    recordings = make_recordings(max(args.rooms), args.sentences, args.pause, folder)
    want_replicas = not args.no_replica_row
    rows = []
    with contextlib.ExitStack() as stack:
        if args.url:
            urls, model = args.url, args.model
        else:
            urls = stack.enter_context(tiny_servers(2 if want_replicas else 1))
            model = args.model or "tiny-whisper"
        for n in args.rooms:
            print(f"{n} room(s) on one server ...", flush=True)
            rows.append(summarise("1 server", n, run_rooms(recordings[:n], urls[:1], model)))
        if want_replicas and len(urls) > 1:
            n = max(args.rooms)
            print(f"{n} room(s) on two replicas ...", flush=True)
            rows.append(summarise("2 replicas", n, run_rooms(recordings[:n], urls[:2], model)))
    ref = rows[0]
    print_table(
        "end of speech -> transcript (ms) and server throughput (audio s per wall s); "
        f"ratios against {ref['rooms']} room(s) on one server",
        ["servers", "rooms", "utts", "errors", "p50", "p95", "p50 ratio", "p95 ratio",
         "audio s/s", "throughput ratio"],
        [
            [r["label"], r["rooms"], r["utterances"], r["errors"], r["p50"], r["p95"],
             r["p50"] / ref["p50"], r["p95"] / ref["p95"], r["throughput"],
             r["throughput"] / ref["throughput"]]
            for r in rows
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

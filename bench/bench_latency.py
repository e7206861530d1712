"""End of speech -> a subscriber holding the final text, with speculation off and on.

Runs the real daemon (embedded Whisper tiny.en, defaults otherwise) twice over the same
multi-utterance stream of read speech (espeak-ng sentences from tests/speech.py, paced like a
microphone with `--realtime`), with a real ZeroMQ subscriber, and prints one table:

- p50 / p95 / max latency from the end of speech (the transcript's `end`) to the subscriber
  receiving the transcript;
- CPU cores the daemon used over the session: its process CPU time / wall time from `ready`
  to `stopped` (model loading excluded; both read from /proc);
- WER of all finals against the known text (jiwer, lower case, punctuation removed);
- speculative decodes and wasted ones (from the last status event), utterances delivered;
- ratios of latency p50 and CPU against the speculation-off row (the reference, same process);
- where the slowest final's time went (hangover, queue, engine), from its `timings_ms`.

`--inner-pause S` speaks each sentence's last two words after a pause of S seconds inside the
sentence (0.3 s: long enough to start a speculative decode, too short to end the utterance): the
decode speech interrupts is the one a final could queue behind.

The machine's load average is printed with it: on a shared machine rerun it when quiet.

    python bench/bench_latency.py [--sentences 12] [--pause 1.2] [--inner-pause 0.3] [--only on]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import soundfile
from _common import (
    cpu_seconds,
    daemon_events,
    isolated_env,
    normalise,
    pct,
    print_table,
    start_realtime_daemon,
)


@dataclass(frozen=True)
class Run:
    mode: str
    latencies_s: list[float]
    cpu_cores: float
    texts: list[str]
    speculative: int
    wasted: int
    partials: int
    slowest: dict  # timings_ms of the slowest final


def run_daemon(wav: str, mode: str, extra: list[str], verbose: bool = False) -> Run:
    proc, context, sub = start_realtime_daemon(wav, isolated_env(), extra)
    latencies, texts = [], []
    slowest: dict = {}
    ready_at = ready_cpu = None
    cpu = float("nan")
    last_status: dict = {}
    partials = 0
    for topic, at, body in daemon_events(proc, sub):
        if topic == b"transcript":
            latencies.append(at - body["end"])
            texts.append(body["text"])
            if latencies[-1] == max(latencies):
                slowest = body.get("timings_ms", {})
            if verbose:
                split = {k: round(v) for k, v in body.get("timings_ms", {}).items()}
                print(f"  {latencies[-1]:.2f} s {split} {body['text'][-30:]!r}", flush=True)
        elif topic == b"partial":
            partials += 1
        elif topic == b"status":
            last_status = body
            if body["state"] == "ready" and ready_at is None:
                ready_at, ready_cpu = at, cpu_seconds(proc.pid)
            elif body["state"] == "stopped" and ready_at is not None:
                cpu = (cpu_seconds(proc.pid) - ready_cpu) / (at - ready_at)
    context.destroy()
    if proc.returncode != 0:
        raise SystemExit(f"the daemon ({mode}) exited with {proc.returncode}")
    return Run(
        mode,
        latencies,
        cpu,
        texts,
        last_status.get("speculative", 0),
        last_status.get("speculative_wasted", 0),
        partials,
        slowest,
    )


def split_sentences(sentences, pause_s: float, inner_s: float) -> tuple[list[str], list[float]]:
    """Each sentence as two clips, its last two words `inner_s` after the rest (none if 0)."""
    if inner_s <= 0:
        return list(sentences), [pause_s] * (len(sentences) - 1)
    clips, gaps = [], []
    for sentence in sentences:
        words = sentence.split()
        clips += [" ".join(words[:-2]), " ".join(words[-2:])]
        gaps += [inner_s, pause_s]
    return clips, gaps[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--pause", type=float, default=1.2, help="seconds between sentences")
    parser.add_argument(
        "--inner-pause", type=float, default=0.0, help="a pause inside each sentence (s)"
    )
    parser.add_argument("--only", choices=("off", "on"), help="run one mode only")
    parser.add_argument("--verbose", action="store_true", help="print each final's timings")
    args = parser.parse_args()

    import jiwer

    from dictated.audio.format import SAMPLE_RATE
    from tests.speech import SENTENCES, compose

    clips, gaps = split_sentences(SENTENCES[: args.sentences], args.pause, args.inner_pause)
    signal = compose(clips, gaps)
    utterances = args.sentences
    wav = f"{isolated_env()['XDG_DATA_HOME']}-latency.wav"
    soundfile.write(wav, signal.pcm, SAMPLE_RATE, subtype="PCM_16")
    truth = normalise(signal.text)
    modes = {"off": ["--speculation", "off"], "on": []}  # on: the defaults, no flags
    if args.only:
        modes = {args.only: modes[args.only]}
    seconds = len(signal.pcm) / SAMPLE_RATE
    runs = []
    for mode, extra in modes.items():
        print(f"speculation {mode}: {seconds:.0f} s of speech in real time ...", flush=True)
        runs.append(run_daemon(wav, mode, extra, args.verbose))
    load = os.getloadavg()

    ref = runs[0]
    rows = []
    for r in runs:
        wer = jiwer.wer(truth, normalise(" ".join(r.texts)))
        rows.append(
            [
                f"speculation {r.mode}",
                f"{len(r.latencies_s)}/{utterances}",
                pct(r.latencies_s, 50),
                pct(r.latencies_s, 95),
                max(r.latencies_s, default=float("nan")),
                f"{r.cpu_cores:.3f}",
                f"{wer:.3f}",
                r.speculative,
                r.wasted,
                r.partials,
                pct(r.latencies_s, 50) / pct(ref.latencies_s, 50),
                r.cpu_cores / ref.cpu_cores,
            ]
        )
    print_table(
        f"end of speech -> subscriber holding the final ({utterances} utterances, "
        f"{seconds:.0f} s, pauses {args.pause:g} s, inside {args.inner_pause:g} s; load average {load[0]:.2f} {load[1]:.2f}; "
        f"latency in s; ratios against the first row)",
        [
            "run",
            "delivered",
            "p50",
            "p95",
            "max",
            "cpu cores",
            "WER",
            "spec",
            "wasted",
            "partials",
            "p50 ratio",
            "cpu ratio",
        ],
        rows,
    )
    for r in runs:
        split = {
            k: r.slowest[k]
            for k in ("hangover", "queue", "engine", "speculative")
            if k in r.slowest
        }
        print(f"slowest final, speculation {r.mode} (ms): {split}")


if __name__ == "__main__":
    main()

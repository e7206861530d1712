"""A real desk: read speech with keyboard typing, music, a fan, chimes and distant voices.

Builds its own session (about two minutes) from read speech (espeak-ng sentences,
tests/speech.py) and real desk noise (tests/desk_noise.py, which names each recording's Debian
package and licence: Model M key sounds from bucklespring-data, GPL-2+; Kenta Cho's TUMIKI
Fighters music from tumiki-fighters-data, BSD-2-Clause; freedesktop notification chimes from
sound-theme-freedesktop, CC-BY(-SA)-3.0; a synthesised fan; espeak-ng voices muffled and
reverberant for colleagues across the room). Noise plays alone between stretches of speech and
under them. The session streams in real time (`--realtime`) through the real daemon (embedded
Whisper tiny.en, defaults otherwise) once per VAD (`segmenter.vad = "webrtc"`, then "silero",
the default), plus the same speech without noise as the clean reference, and prints one table:

- latency from the true end of each sentence (known from the composed signal) to the subscriber
  holding the transcript that covers it: p50 / p95 / max (an utterance the noise holds open
  shows here; a sentence never delivered counts as missing);
- spurious transcripts: text published for audio where nobody near spoke (noise alone; the
  distant voices' stretch counted apart, as they are speech, only not ours);
- non-speech utterances decoded: transcripts (with or without text) overlapping no sentence,
  and `dropped_nonspeech` from the last status where the daemon counts them;
- WER of all transcripts against the read text (jiwer, lower case, punctuation removed), so
  spurious text counts as insertions; and WER without the distant voices' transcripts (which no
  VAD can refuse: they are speech), which is the figure to hold against the clean session's;
- CPU cores the daemon used from `ready` to `stopped` (its CPU time / wall time, from /proc).

On a shared machine run it with `nice` and read the load average printed with it.

    python bench/bench_noisy_desk.py [--sentences 12] [--no-clean] [--verbose]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import numpy as np
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

SR = 16000


@dataclass
class Session:
    pcm: np.ndarray
    sentences: list[tuple[str, float, float]]  # text, start s, end s (true speech)
    voices: list[tuple[float, float]]  # stretches of distant voices alone (s)


@dataclass
class Result:
    name: str
    transcripts: list[dict] = field(default_factory=list)  # body + "_at" (arrival, epoch s)
    cpu_cores: float = float("nan")
    status: dict = field(default_factory=dict)


def build_session(count: int) -> tuple[Session, np.ndarray]:
    """(noisy session, the same speech without noise). Each block: noise alone, then sentences
    over it; the speech level is espeak-ng's (about -21 dBFS), noise 8-12 dB below it."""
    from tests import desk_noise as dn
    from tests.speech import SENTENCES, add_noise, synthesize

    blocks = [  # noise, seconds of it alone first, sentences over it
        ("typing", lambda s, k: dn.typing(s, -30, seed=k), 6.0),
        ("music", lambda s, k: dn.music(s, -30, seed=k), 6.0),
        ("fan", lambda s, k: dn.fan(s, -36, seed=k), 4.0),
        ("chimes", lambda s, k: dn.chimes(s, 3.0, -28, seed=k), 6.0),
        ("music+typing", lambda s, k: dn.mix(dn.music(s, -32, seed=k), dn.typing(s, -32, k)), 6.0),
    ]
    texts = list(SENTENCES[:count])
    sizes = [count // len(blocks) + (k < count % len(blocks)) for k in range(len(blocks))]
    noisy, clean, sentences = [np.zeros(SR, np.int16)], [np.zeros(SR, np.int16)], []
    pos = SR
    for k, (_name, make, alone_s) in enumerate(blocks):
        mine, texts = texts[: sizes[k]], texts[sizes[k] :]
        if not mine:
            break
        speech = [np.zeros(round(alone_s * SR), np.int16)]
        at = len(speech[0])
        for text in mine:
            clip = synthesize(text)
            sentences.append((text, (pos + at) / SR, (pos + at + len(clip)) / SR))
            speech += [clip, np.zeros(2 * SR, np.int16)]
            at += len(clip) + 2 * SR
        speech.append(np.zeros(3 * SR, np.int16))  # the noise goes on after the last sentence
        speech = np.concatenate(speech)
        noisy.append(dn.mix(speech, make(len(speech) / SR, k + 1)))
        clean.append(speech)
        pos += len(speech)
    voices_s = 8.0
    voices = [(pos / SR, pos / SR + voices_s)]
    noisy.append(dn.distant_voices(voices_s, seed=9))
    clean.append(np.zeros(round(voices_s * SR), np.int16))
    noisy.append(np.zeros(2 * SR, np.int16))
    clean.append(np.zeros(2 * SR, np.int16))
    room = lambda x: add_noise(np.concatenate(x), -62, seed=1, color="pink")  # noqa: E731
    return Session(room(noisy), sentences, voices), room(clean)


def run_daemon(wav: str, name: str, vad: str, verbose: bool) -> Result:
    env = isolated_env()
    config = f"{env['XDG_DATA_HOME']}-{name}.toml"
    with open(config, "w") as f:
        f.write(f'[segmenter]\nvad = "{vad}"\n')
    proc, context, sub = start_realtime_daemon(wav, env, ["--config", config])
    result = Result(name)
    ready_at = ready_cpu = None
    for topic, at, body in daemon_events(proc, sub):
        if topic == b"transcript":
            body["_at"] = at
            result.transcripts.append(body)
            if verbose:
                print(f"  [{body['stream_start']:.2f}-{body['stream_end']:.2f}] {body['text']!r}")
        elif topic == b"status":
            result.status = body
            if body["state"] == "ready" and ready_at is None:
                ready_at, ready_cpu = at, cpu_seconds(proc.pid)
            elif body["state"] == "stopped" and ready_at is not None:
                result.cpu_cores = (cpu_seconds(proc.pid) - ready_cpu) / (at - ready_at)
    context.destroy()
    if proc.returncode != 0:
        raise SystemExit(f"the daemon ({name}) exited with {proc.returncode}")
    return result


def score(r: Result, session: Session, truth: str) -> list:
    import jiwer

    ts = r.transcripts
    # wall clock of the stream's first sample: onset times in both clocks (real-time pacing)
    origins = [t["speech_start"] - t["stream_start"] for t in ts]
    origin = float(np.median(origins)) if origins else 0.0
    latencies, missing = [], 0
    for _text, start, end in session.sentences:
        covering = [t for t in ts if t["stream_start"] <= end and t["stream_end"] >= end - 0.5]
        covering = covering or [
            t for t in ts if t["stream_start"] < end and t["stream_end"] > start
        ]
        if not covering:
            missing += 1
            continue
        latencies.append(min(t["_at"] for t in covering) - (origin + end))

    def overlaps(t: dict, spans) -> bool:
        return any(t["stream_start"] < b + 0.2 and t["stream_end"] > a - 0.2 for a, b in spans)

    speech = [(a, b) for _t, a, b in session.sentences]
    nonspeech = [t for t in ts if not overlaps(t, speech)]
    in_voices = [t for t in nonspeech if overlaps(t, session.voices)]
    spurious = [t for t in nonspeech if t["text"].strip() and t not in in_voices]
    voices_text = [t for t in in_voices if t["text"].strip()]
    wer = jiwer.wer(truth, normalise(" ".join(t["text"] for t in ts)) or "-")
    near = [t for t in ts if t not in in_voices]
    wer_near = jiwer.wer(truth, normalise(" ".join(t["text"] for t in near)) or "-")
    dropped = r.status.get("dropped_nonspeech", "-")
    return [
        r.name,
        f"{len(latencies)}/{len(session.sentences)}",
        pct(latencies, 50),
        pct(latencies, 95),
        max(latencies, default=float("nan")),
        len(spurious),
        len(voices_text),
        f"{len(nonspeech) - len(in_voices)}/{len(ts)}",
        dropped,
        f"{wer:.3f}",
        f"{wer_near:.3f}",
        f"{r.cpu_cores:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--no-clean", action="store_true", help="skip the clean reference run")
    parser.add_argument("--verbose", action="store_true", help="print each transcript")
    args = parser.parse_args()

    session, clean = build_session(args.sentences)
    seconds = len(session.pcm) / SR
    base = isolated_env()["XDG_DATA_HOME"]
    noisy_wav, clean_wav = f"{base}-noisy.wav", f"{base}-clean.wav"
    soundfile.write(noisy_wav, session.pcm, SR, subtype="PCM_16")
    soundfile.write(clean_wav, clean, SR, subtype="PCM_16")
    truth = normalise(" ".join(text for text, _a, _b in session.sentences))
    runs = [
        ("noisy desk, webrtc", noisy_wav, "webrtc"),
        ("noisy desk, silero", noisy_wav, "silero"),
    ]
    if not args.no_clean:
        runs.append(("clean, silero", clean_wav, "silero"))
    rows = []
    for name, wav, vad in runs:
        print(f"{name}: {seconds:.0f} s in real time ...", flush=True)
        r = run_daemon(wav, name, vad, args.verbose)
        rows.append(score(r, session, truth))
    load = os.getloadavg()
    print_table(
        f"noisy desk: {len(session.sentences)} sentences in {seconds:.0f} s (typing, music, fan, "
        f"chimes, music+typing, then distant voices alone); latency from the true end of speech "
        f"to the final, s; load average {load[0]:.2f} {load[1]:.2f}",
        [
            "run",
            "delivered",
            "p50",
            "p95",
            "max",
            "spurious",
            "distant-voice text",
            "non-speech decoded",
            "dropped_nonspeech",
            "WER",
            "WER w/o voices",
            "cpu cores",
        ],
        rows,
    )


if __name__ == "__main__":
    main()

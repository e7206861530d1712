"""Echo suppression measured on a two-party meeting from real speech (tests/meeting_audio.py).

The mic track holds the user's five sentences plus the other side's four as laptop speakers put
them back into the microphone (sox: delay, band limit, reverb) at several levels; "headphones" is
the user alone. Both tracks go through the real segmenter and Whisper engine, then the suppressor
in live order (tests/echo_replay.py), with the system finals on time or 2.5 s late (queued on the
one worker behind the mic's, so mic finals must wait for them). Reported per row: the other side's
sentences duplicated on the mic channel without and with suppression, the user's WER (alone, on
the raw mic channel, after suppression), what the suppressor did, how long mic results waited
(those overlapping the other side, and the user's own turns: these must not wait), and its CPU
time per judged result.

    .venv/bin/python bench/bench_echo.py [--levels -20 -10 -6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import pct, print_table

from dictated.echo import EchoSuppressor
from dictated.engines import EngineOptions, create_engine
from tests.echo_replay import echoes_of, replay, transcribe_track, wer
from tests.meeting_audio import build_meeting, write_wav

LATE_S = (0.0, 2.5)


def _judge_ms(tracks) -> float:
    """Mean CPU time of one `judge` over the mic results (the far results all known)."""
    from dictated.echo import Heard

    s = EchoSuppressor()
    for u in tracks["system"]:
        s.push(Heard("system", u.transcript.text, u.speech_start_s, u.speech_end_s), 0.0)
    mic = [Heard("mic", u.transcript.text, u.speech_start_s, u.speech_end_s) for u in tracks["mic"]]
    t = time.process_time()
    for _ in range(20):
        for h in mic:
            s.judge(h)
    return (time.process_time() - t) * 1000 / (20 * max(1, len(mic)))


def _rows(name: str, meeting, tracks, alone_wer: float) -> list[list]:
    far_sentences = [s.text for s in meeting.far]
    far_spans = [(s.start_sample / 16000, s.end_sample / 16000) for s in meeting.far]
    raw = [u.transcript.text for u in tracks["mic"]]
    rows = []
    for late in LATE_S:
        r = replay({"system": tracks["system"], "mic": tracks["mic"]}, late={"system": late})
        mic = r.published("mic")
        held_overlap, held_own = [], []
        for v in (v for v in r.verdicts if v.heard.channel == "mic"):
            over = any(a <= v.heard.end + 0.5 and b >= v.heard.start - 0.5 for a, b in far_spans)
            (held_overlap if over else held_own).append(v.held_s)
        rows.append(
            [name, late, echoes_of(far_sentences, raw), echoes_of(far_sentences, mic),
             alone_wer, wer(meeting.near_text, " ".join(raw)), wer(meeting.near_text, " ".join(mic)),
             f"{r.stats['dropped']}/{r.stats['trimmed']}",
             pct(held_overlap, 50) if held_overlap else 0.0, max(held_own, default=0.0),
             _judge_ms(tracks)]
        )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=float, nargs="+", default=[-20.0, -10.0, -6.0])
    args = parser.parse_args()
    engine = create_engine("whisper", EngineOptions())
    d = Path(tempfile.mkdtemp(prefix="bench-echo-"))
    rows: list[list] = []
    for i, level in enumerate(args.levels):
        meeting = build_meeting(echo_db=level)
        tracks = {
            "system": transcribe_track(write_wav(d / f"system{i}.wav", meeting.system), engine),
            "mic": transcribe_track(write_wav(d / f"mic{i}.wav", meeting.mic), engine),
        }
        if i == 0:
            alone = transcribe_track(write_wav(d / "alone.wav", meeting.mic_alone), engine)
            alone_wer = wer(meeting.near_text, " ".join(u.transcript.text for u in alone))
            rows += _rows("headphones", meeting, {**tracks, "mic": alone}, alone_wer)
        rows += _rows(f"echo {level:+.0f} dB", meeting, tracks, alone_wer)
    print_table(
        "Echo suppression: 4 sentences of theirs, 5 of yours (Whisper tiny.en, real sox room echo)",
        ["mic track", "system late s", "dups raw", "dups kept", "WER alone", "WER raw",
         "WER suppressed", "dropped/trimmed", "wait p50 s (overlap)", "wait max s (own turns)",
         "judge ms"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()

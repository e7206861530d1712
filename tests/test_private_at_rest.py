"""Transcripts and speech at rest: owner-only whatever the umask, and durable before they are named.

"Another account" is uid 65534 (nobody), reading through `setpriv` as a real other user would:
the tests run as root, so a permission check by stat alone would prove less than a refused read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from dictated.journal import Journal, Rotation
from dictated.protocol import make_event
from tests.daemon_proc import start_daemon
from tests.fake_engine import FakeEngine
from tests.speech import SENTENCES, compose
from tests.test_server import GatedSource, InProcess

NOBODY = 65534


@pytest.fixture
def umask_022():
    """The usual default umask, under which the old code made everything world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def open_dir():
    """A directory every account may traverse, so only our own modes can keep `nobody` out."""
    path = Path(tempfile.mkdtemp(prefix="dt-priv-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def read_as_nobody(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_refused(path: Path) -> None:
    done = read_as_nobody(path)
    assert done.returncode != 0 and "Permission denied" in done.stderr, (path, done)


# --- the journal ---------------------------------------------------------------------------------


def test_journal_files_and_directory_are_owner_only_under_umask_022(umask_022, open_dir):
    path = open_dir / "j" / "journal.jsonl"
    journal = Journal(path, Rotation(max_bytes=200))
    for seq in range(1, 6):
        journal.append(make_event("transcript", seq, {"text": f"secret {seq} " * 20}))
    journal.close()
    files = journal.files()
    assert len(files) >= 3  # rotated ones and the current one
    assert mode(path.parent) == 0o700
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    os.chmod(path.parent, 0o755)  # even with the directory opened up, the files refuse
    control = open_dir / "control.txt"
    control.write_text("readable\n")
    assert read_as_nobody(control).stdout == "readable\n"  # setpriv and the path work
    for p in files:
        assert_refused(p)


def test_earlier_world_readable_files_are_tightened_once_never_through_a_symlink(
    umask_022, open_dir, caplog
):
    """What an earlier version left 0644/0755 becomes owner-only at start, with one log line; a
    symlink's target and another account's file are left alone."""
    directory = open_dir / "j"
    failed = directory / "journal.failed"
    failed.mkdir(parents=True)
    os.chmod(directory, 0o755)
    path = directory / "journal.jsonl"
    Journal(path).close()
    for p in (path, directory / "journal.4.jsonl", failed / "run-1.wav"):
        p.touch()
        os.chmod(p, 0o644)
    os.chmod(directory, 0o755)
    os.chmod(failed, 0o755)
    outside = open_dir / "outside.wav"
    outside.touch()
    os.chmod(outside, 0o644)
    (failed / "run-2.wav").symlink_to(outside)
    theirs = directory / "journal.2.jsonl"
    theirs.touch()
    os.chmod(theirs, 0o644)
    os.chown(theirs, NOBODY, NOBODY)
    caplog.clear()
    Journal(path).close()
    assert mode(directory) == mode(failed) == 0o700
    assert mode(path) == mode(directory / "journal.4.jsonl") == mode(failed / "run-1.wav") == 0o600
    assert mode(outside) == 0o644 and mode(theirs) == 0o644  # not ours to change
    tightened = [r.getMessage() for r in caplog.records if "readable by other" in r.getMessage()]
    assert len(tightened) == 1 and "5 of its files or directories" in tightened[0], tightened
    caplog.clear()
    Journal(path).close()
    assert "readable by other" not in caplog.text  # once: nothing left to tighten


def test_a_directory_the_user_keeps_other_things_in_keeps_its_mode(umask_022, open_dir):
    (open_dir / "notes.txt").write_text("mine")
    journal = Journal(open_dir / "journal.jsonl")
    journal.append(make_event("transcript", 1, {"text": "secret"}))
    journal.close()
    assert mode(open_dir) == 0o755 and mode(open_dir / "journal.jsonl") == 0o600


def test_a_symlink_where_the_journal_would_be_created_is_refused(open_dir):
    target = open_dir / "elsewhere.jsonl"
    (open_dir / "j").mkdir(mode=0o700)
    (open_dir / "j" / "journal.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        Journal(open_dir / "j" / "journal.jsonl")
    assert not target.exists()


# --- caption files ---------------------------------------------------------------------------------


def test_a_new_caption_file_is_owner_only_and_an_overwritten_one_keeps_its_mode(
    umask_022, open_dir
):
    """A new --srt/--vtt file is the meeting's transcript: 0600. A file the user made and asks
    to replace (--overwrite) keeps the mode they gave it: they chose who may read it."""
    from dictated.clients.captions.cues import Cue
    from dictated.clients.captions.writers import CueFile

    new = open_dir / "meeting.vtt"
    with CueFile(new, "vtt") as f:
        f.append([Cue(1, 0.0, 1.5, ("private words",))])
    assert mode(new) == 0o600
    assert_refused(new)
    shared = open_dir / "shared.srt"
    shared.write_text("old\n")
    os.chmod(shared, 0o644)
    with CueFile(shared, "srt", overwrite=True) as f:
        f.append([Cue(1, 0.0, 1.5, ("for everyone",))])
    assert mode(shared) == 0o644 and "for everyone" in read_as_nobody(shared).stdout


# --- durability: the directory entry is on disk before anything names the file -------------------


class FsyncLog(list):
    """Each os.fsync as (the path synced, whether `watched` existed at that moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: Path | None = None


@pytest.fixture
def fsyncs(monkeypatch) -> FsyncLog:
    calls = FsyncLog()
    real = os.fsync

    def recording(fd: int) -> None:
        real(fd)
        exists = calls.watched is not None and calls.watched.exists()
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), exists))

    monkeypatch.setattr(os, "fsync", recording)
    return calls


def test_creating_a_journal_file_fsyncs_its_directory_before_the_first_event(tmp_path, fsyncs):
    path = tmp_path / "j" / "journal.jsonl"
    fsyncs.watched = path
    journal = Journal(path, Rotation(max_bytes=150))
    journal.append(make_event("transcript", 1, {"text": "first"}))
    first_event = fsyncs.index((str(path), True))
    assert (str(path.parent), True) in fsyncs[:first_event]  # created, then the directory
    assert (str(tmp_path), False) in fsyncs[:first_event]  # the new directory itself, too
    fsyncs.clear()
    journal.append(make_event("transcript", 2, {"text": "x" * 200}))  # over 150 bytes: rotates
    retired = path.with_name("journal.2.jsonl")
    assert retired.exists() and path.exists()
    # after the rename AND the new current file: the directory synced with both entries in it
    assert fsyncs[-1] == (str(path.parent), True), fsyncs
    journal.close()


def test_saved_audio_is_fsynced_before_its_path_is_returned(tmp_path, fsyncs):
    from dictated.private_files import write_private_wav

    path = tmp_path / "failed" / "run-1.wav"
    fsyncs.watched = path
    write_private_wav(path, np.zeros(1600, dtype=np.float32), 16_000)
    # the new directory in its parent, the new file in the directory, then the audio itself
    assert fsyncs == [(str(tmp_path), False), (str(path.parent), True), (str(path), True)]


def test_failed_audio_follows_the_journal_is_private_and_on_disk_before_its_event(
    isolated_env, free_port, tmp_path, fsyncs, umask_022
):
    """An utterance the engine fails on: its audio beside the configured journal (not the data
    dir), 0600 in a 0700 directory, fsync'd with its directory entry before the error event."""
    speech = compose(SENTENCES[:2], 1.5, lead_s=1.0)
    run = InProcess(isolated_env, free_port, GatedSource(speech.pcm), FakeEngine((1,)), tmp_path)
    fsyncs.watched = run.journal_path
    assert run.start().finish() == 0
    (error,) = run.of("error")
    audio = Path(error["audio_path"])
    assert audio.parent == run.journal_path.parent / f"{run.journal_path.stem}.failed"
    assert mode(audio) == 0o600 and mode(audio.parent) == 0o700
    assert not (Path(isolated_env["XDG_DATA_HOME"]) / "dictated" / "failed").exists()
    synced = [p for p, _ in fsyncs]
    error_line = next(
        i
        for i, (p, _) in enumerate(fsyncs)
        if p == str(run.journal_path) and _journal_has_error(run.journal_path, i, fsyncs)
    )
    assert synced.index(str(audio.parent)) < error_line and synced.index(str(audio)) < error_line


def _journal_has_error(path: Path, index: int, calls: list[tuple[str, bool]]) -> bool:
    """Whether the index-th fsync of the journal was the one that made the error line durable
    (the journal's fsyncs are one per event, in order)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    journal_syncs = [i for i, (p, _) in enumerate(calls) if p == str(path)]
    return json.loads(lines[journal_syncs.index(index)])["topic"] == "error"


# --- the real daemon, as another account would try it --------------------------------------------


class StubTranscriber:
    """An OpenAI-style transcription server on loopback: the warm-up gets "", then utterances
    alternately a known text and an HTTP 500 (so some are journaled, some fail and are saved)."""

    def __init__(self) -> None:
        self.requests = 0
        self.texts: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.requests += 1
                status, body = stub.answer(stub.requests)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, n: int) -> tuple[int, bytes]:
        if n == 1:
            return 200, b'{"text": ""}'
        if n % 2:
            return 500, b'{"error": {"message": "stub failure"}}'
        text = f"Private words number {n}."
        self.texts.append(text)
        return 200, json.dumps({"text": text}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_another_account_cannot_read_the_journal_audio_captions_or_the_log(
    isolated_env, open_dir, umask_022
):
    journal = open_dir / "j" / "journal.jsonl"
    srt = open_dir / "meeting.srt"
    config = open_dir / "config.toml"
    config.write_text(
        '[engine]\nname = "remote"\n[engine.remote]\nmodel = "stub"\ntimeout_s = 10\n'
        "backoff_s = 0.1\nmax_backoff_s = 0.2\n[journal]\nrotate_mb = 0.0005\n"
    )
    stub = StubTranscriber()
    captions = subprocess.Popen(
        [str(Path(sys.executable).parent / "dictated-captions"), "--srt", str(srt), "--since", "0"],
        env=isolated_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    daemon = start_daemon(
        isolated_env,
        "--config", str(config),
        "--source", "file:samples/dictation-demo.wav",
        "--remote-url", stub.url,
        "--journal", str(journal),
        "--speculation", "off",
        "--linger", "8",  # time for the captions client (retrying each second) to connect
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _has(srt, "Private words"):
            assert time.monotonic() < deadline and daemon.proc.poll() is None, daemon.finish()
            time.sleep(0.2)
        stderr = daemon.finish(120)
        assert daemon.proc.returncode == 0, stderr
    finally:
        daemon.stop()
        captions.terminate()
        captions.communicate(timeout=30)
        stub.close()
    events = [
        json.loads(line)["event"]
        for path in Journal(journal).files()
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    transcripts = [e["text"] for e in events if "text" in e]
    saved = [Path(e["audio_path"]) for e in events if e.get("audio_path")]
    rotated = list(journal.parent.glob("journal.*.jsonl"))
    assert transcripts and saved and rotated, (events, stderr)
    private = [journal, rotated[0], saved[0], srt]
    for p in private:
        assert_refused(p)
    assert {p: mode(p) for p in private} == {p: 0o600 for p in private}
    assert mode(journal.parent) == mode(saved[0].parent) == 0o700
    os.chmod(journal.parent, 0o755)
    os.chmod(saved[0].parent, 0o755)
    for p in private:  # the files themselves refuse, not only their directory
        assert_refused(p)
    assert all(p.parent == journal.parent / f"{journal.stem}.failed" for p in saved)  # beside it
    # the log at the default level says what happened, not what was said
    assert "chars" in stderr and not any(text in stderr for text in transcripts), stderr


def _has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(encoding="utf-8")


def test_a_caption_file_is_never_written_through_a_symlink(tmp_path):
    """`--overwrite` of a name in a shared folder: a symlink planted there (pointing at a file of
    ours) must not have that file truncated."""
    from dictated.clients.captions.writers import CaptionFileError, CueFile

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    link = tmp_path / "meeting.srt"
    link.symlink_to(precious)
    with pytest.raises(CaptionFileError, match="is a symbolic link"):
        CueFile(link, "srt", overwrite=True)
    assert precious.read_text() == "keep me\n"

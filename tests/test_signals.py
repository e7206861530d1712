"""Shutdown: a stop signal flushes the open utterance, which is transcribed and published, then exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.daemon_proc import start_daemon
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.slow  # the real daemon with a real model


def test_sigterm_mid_speech_publishes_the_open_utterance(isolated_env, tmp_path):
    journal = tmp_path / "journal.jsonl"
    daemon = start_daemon(
        isolated_env,
        "--source",
        "-",
        "--engine",
        "whisper",
        "--linger",
        "0",
        "--journal",
        str(journal),
        stdin=subprocess.PIPE,
    )
    daemon.wait_ready()
    # speech with no trailing silence: the segmenter is still inside the utterance
    daemon.feed(np.concatenate([silence(0.5), synthesize(SENTENCES[4])]).astype("<i2").tobytes())
    time.sleep(2.0)  # read and segmented well before this; the hangover never comes
    assert daemon.control.request("status")["utterances"] == 0
    daemon.proc.send_signal(signal.SIGTERM)  # stdin stays open: only the signal ends the run
    daemon.proc.wait(60)
    stderr = daemon.proc.stderr.read().decode()
    daemon.proc.stdin.close()
    assert daemon.proc.returncode == 0, stderr
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    transcripts = [e["event"] for e in events if e["topic"] == "transcript"]
    assert len(transcripts) == 1, stderr
    assert transcripts[0]["reason"] == "end_of_input"
    assert "tomatoes" in transcripts[0]["text"].lower()

"""`dictated run --source system` end to end: speech played into the default output of a real
PulseAudio server (tests/pulse.py) is transcribed by the real daemon on the embedded engine."""

from __future__ import annotations

import os
import sys

import jiwer
import numpy as np
import pytest
import soundfile

from dictated.audio.format import SAMPLE_RATE
from tests import pulse, speech
from tests.daemon_proc import start_daemon, wait_for_transcripts

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="PulseAudio monitors are Linux's"),
    pytest.mark.skipif(pulse.missing_reason() is not None, reason=str(pulse.missing_reason())),
    pytest.mark.slow,
]


def test_the_daemon_transcribes_what_the_computer_plays(tmp_path, isolated_env):
    text = speech.SENTENCES[6]
    wav = tmp_path / "played.wav"
    # a second of silence first: the daemon records from when it is ready, parec takes ~0.1 s
    played = np.concatenate([speech.silence(1.0), speech.synthesize(text), speech.silence(1.5)])
    soundfile.write(wav, played, SAMPLE_RATE, subtype="PCM_16")
    with pulse.running(("speakers",)) as server:
        env = {**isolated_env, **server.env, "PATH": os.environ["PATH"]}
        daemon = start_daemon(env, "--source", "system", "--engine", "whisper")
        try:
            status = daemon.wait_ready(120)
            assert status["source"] == "system:speakers"
            assert server.play(wav, "@DEFAULT_SINK@").wait(30) == 0
            [transcript] = wait_for_transcripts(daemon, 1, timeout_s=60)
        finally:
            log = daemon.stop()
    wer = jiwer.wer(_words(text), _words(transcript["text"]))
    assert wer <= 0.1, (wer, transcript, log)
    # one unlabelled source: its kind's label, no speaker (the issue 16 contract)
    assert transcript["channel"] == "system" and "speaker" not in transcript
    assert "capturing 'Null Output' (speakers.monitor)" in log


def _words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())

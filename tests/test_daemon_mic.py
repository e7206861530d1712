"""The daemon on a microphone: real PortAudio capture from an ALSA device (no sound card needed).

The ALSA device reads a named pipe this test writes to, so the test decides what the "microphone"
hears and when it goes dead. See tests/alsa.py for how the per-process ALSA world is built.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from tests import alsa
from tests.daemon_proc import start_daemon
from tests.speech import SENTENCES, silence, synthesize

pytestmark = [
    pytest.mark.skipif(
        alsa.portaudio_missing_reason() is not None, reason=str(alsa.portaudio_missing_reason())
    ),
    pytest.mark.slow,  # the real daemon with a real model
]

CHUNK = 1600  # 100 ms


def test_microphone_transcripts_then_a_vanished_device_is_a_clear_error(isolated_env, tmp_path):
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    config = alsa.write_config(
        tmp_path / "asound.conf", [alsa.fifo_capture("testmic", fifo)], default="testmic"
    )
    fd = os.open(fifo, os.O_RDWR)  # a writer exists before PortAudio probes the device
    speech = np.concatenate(
        [
            silence(0.5),
            synthesize(SENTENCES[0]),
            silence(1.5),
            synthesize(SENTENCES[6]),
            silence(1.5),
        ]
    )
    talking = threading.Event()
    talking.set()

    def microphone() -> None:
        """Speech as fast as the pipe takes it, then room silence in real time until unplugged."""
        os.write(fd, speech.astype("<i2").tobytes())
        while talking.is_set():
            os.write(fd, np.zeros(CHUNK, "<i2").tobytes())
            time.sleep(CHUNK / 16000)

    journal = tmp_path / "journal.jsonl"
    env = {**isolated_env, "ALSA_CONFIG_PATH": str(config)}
    daemon = start_daemon(
        env,
        "--source",
        "mic",
        "--input-device",
        "testmic",
        "--engine",
        "whisper",
        "--linger",
        "0",
        "--journal",
        str(journal),
    )
    writer = threading.Thread(target=microphone, daemon=True)
    writer.start()
    try:
        status = daemon.wait_ready()
        assert status["source"] == "mic:testmic"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and daemon.control.request("status")["utterances"] < 2:
            time.sleep(0.2)
        talking.clear()  # the device stops delivering: unplugged
        stderr = daemon.finish(timeout_s=60)
    finally:
        talking.clear()
        daemon.stop()
        os.close(fd)
    assert daemon.proc.returncode == 1, stderr
    assert "vanished" in stderr and "Traceback" not in stderr
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    texts = [e["event"]["text"].lower() for e in events if e["topic"] == "transcript"]
    assert len(texts) == 2 and "train" in texts[0] and "piano" in texts[1]
    errors = [e["event"] for e in events if e["topic"] == "error"]
    assert errors and "vanished" in errors[-1]["message"] and errors[-1]["fatal"] is True

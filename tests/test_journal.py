"""The journal: fsync'd JSONL that survives restarts and torn lines, and serves history by seq."""

from __future__ import annotations

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
    assert [e.seq for e in reopened.since(3)] == [5, 9]
    assert [e.body["text"] for e in reopened.since(0, limit=2)] == ["t5", "t9"]
    assert reopened.since(9) == []


def test_torn_last_line_is_skipped_not_fatal(tmp_path, caplog):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append(make_event("transcript", 1, {"text": "kept"}))
    journal.close()
    with open(path, "a") as f:
        f.write('{"topic": "transcript", "event": {"v": 1, "seq": 2, "te')  # crash mid-write
    reopened = Journal(path)
    assert reopened.last_seq == 1
    assert [e.body["text"] for e in reopened.since(0)] == ["kept"]
    assert "unreadable line 2" in caplog.text

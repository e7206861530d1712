"""Caption cues and files: wrapping, splitting in time, one timeline across daemon runs, valid files."""

from __future__ import annotations

import pytest

from dictated.clients.captions.cues import CaptionOptions, Cue, Timeline, split_cues, wrap
from dictated.clients.captions.writers import CaptionFileExists, CueFile, render, timestamp
from tests.clients.captions.files import read_captions, reference_parse, strict_parse

LONG = (
    "Our team will meet on Thursday afternoon to discuss the new budget proposal, and then we "
    "will walk over to the old library downtown, which is famous for its beautiful reading room "
    "and its quiet garden."
)


def transcript(utt_id: str, text: str, s: float, e: float, wall: float | None = None) -> dict:
    body = {"v": 1, "seq": 1, "id": utt_id, "text": text, "stream_start": s, "stream_end": e}
    if wall is not None:
        body |= {"speech_start": wall, "start": wall - 0.3, "end": wall + (e - s)}
    return body


def test_wrap_keeps_lines_short_and_words_whole():
    lines = wrap(LONG, 42)
    assert all(len(line) <= 42 for line in lines)
    assert " ".join(lines) == LONG
    assert wrap("  spaced \n out\ttext ", 42) == ["spaced out text"]


def test_a_long_utterance_becomes_cues_of_two_lines_sharing_its_time_by_characters():
    cues = split_cues(LONG, 10.0, 22.0, CaptionOptions())
    assert len(cues) == 3 and all(1 <= len(c.lines) <= 2 for c in cues)
    assert [c.index for c in cues] == [1, 2, 3]
    assert cues[0].start == 10.0 and cues[-1].end == 22.0
    assert all(a.end == b.start for a, b in zip(cues, cues[1:], strict=False))  # tiled, no gaps
    assert " ".join(c.text for c in cues) == LONG
    for cue in cues:  # time share follows character share
        share = (cue.end - cue.start) / 12.0
        chars = sum(len(line) + 1 for line in cue.lines) / sum(
            len(line) + 1 for c in cues for line in c.lines
        )
        assert share == pytest.approx(chars)


def test_timeline_follows_stream_times_and_never_runs_backwards_across_a_restart():
    timeline = Timeline()
    a = timeline.place(transcript("r1-1", "hello there", 1.0, 2.5))
    b = timeline.place(transcript("r1-2", "general", 4.0, 5.0))
    assert (a[0].start, a[0].end, b[0].start) == (1.0, 2.5, 4.0)
    # the daemon restarted: its stream time starts again at 0
    c = timeline.place(transcript("r2-1", "after the restart", 0.5, 1.5))
    assert c[0].start == pytest.approx(5.0 + 0.5) and c[0].index == 3
    # an overlapping or empty transcript is clamped or skipped, never earlier
    d = timeline.place(transcript("r2-2", "overlap", 1.0, 1.2))
    assert d[0].start >= c[0].end and d[0].end - d[0].start >= CaptionOptions().min_cue_s
    assert timeline.place(transcript("r2-3", "  ", 3.0, 4.0)) == []


def test_a_live_restart_keeps_the_meetings_wall_clock_timeline():
    """Ten real seconds pass between the runs: the second run starts ten seconds later."""
    timeline = Timeline()
    timeline.place(transcript("r1-1", "one", 1.0, 2.0, wall=1000.0 + 1.0))
    later = timeline.place(transcript("r2-1", "two", 1.0, 2.0, wall=1000.0 + 12.0))
    assert later[0].start == pytest.approx(12.0)


def test_a_daemon_without_stream_times_is_placed_by_wall_clock():
    timeline = Timeline()
    first = timeline.place({"id": "x-1", "text": "a", "start": 100.0, "end": 101.0})
    second = timeline.place({"id": "x-2", "text": "b", "start": 103.0, "end": 104.5})
    assert (first[0].start, second[0].start, second[0].end) == (0.0, 3.0, 4.5)
    assert timeline.place({"id": "x-3", "text": "no times"}) == []


def test_timestamps():
    assert timestamp(3661.0406, "srt") == "01:01:01,041"
    assert timestamp(0.0, "vtt") == "00:00:00.000"
    assert timestamp(360000.0, "vtt") == "100:00:00.000"  # hours grow past 99


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_files_parse_after_every_cue_with_independent_parsers(tmp_path, fmt):
    path = tmp_path / f"meeting.{fmt}"
    timeline = Timeline()
    with CueFile(path, fmt) as out:
        assert strict_parse(path.read_text(), fmt) == []  # valid before the first cue, too
        for i, text in enumerate([LONG, "Fish & chips <b>bold</b> --> arrow", "short"]):
            out.append(timeline.place(transcript(f"r-{i}", text, 3.0 * i * 5, 3.0 * i * 5 + 9)))
            read_captions(path)  # parses mid-meeting, in both readers
    cues = read_captions(path)
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    tricky = next(c for c in cues if "Fish" in c.text)
    if fmt == "vtt":
        assert tricky.text == "Fish &amp; chips &lt;b&gt;bold&lt;/b&gt; --&gt; arrow"
    else:
        assert tricky.text == "Fish & chips <b>bold</b> -> arrow"
    assert render([Cue(1, 0.0, 1.0, ("x",))], fmt) in {
        "1\n00:00:00,000 --> 00:00:01,000\nx\n\n",
        "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\nx\n\n",
    }
    assert len(reference_parse(path.read_text(), fmt)) == len(cues)


def test_an_existing_caption_file_is_never_replaced_unless_asked(tmp_path):
    path = tmp_path / "old.srt"
    path.write_text("1\n00:00:00,000 --> 00:00:01,000\nlast week's meeting\n\n")
    with pytest.raises(CaptionFileExists, match="already exists"):
        CueFile(path, "srt")
    assert "last week" in path.read_text()
    CueFile(path, "srt", overwrite=True).close()
    assert path.read_text() == ""

"""Speaker labels in caption files and the terminal view, and two channels on one timeline.

Files are read back by the independent `srt` and `webvtt` parsers (files.py); webvtt-py reports
each cue's voice span on its own, so the label is checked as a player sees it.
"""

from __future__ import annotations

import io
import random
import time

import pytest

from dictated.clients.captions.captioner import Captioner
from dictated.clients.captions.cues import CaptionOptions, Timeline, cue_groups, split_cues, wrap
from dictated.clients.captions.reorder import Reorder
from dictated.clients.captions.terminal import TerminalView
from dictated.clients.captions.writers import CueFile
from dictated.clients.speakers import Speakers, parse_renames
from dictated.protocol import TOPIC_PARTIAL, TOPIC_TRANSCRIPT, Event

from .files import read_captions, vtt_voices

LONG = (
    "Our team will meet on Thursday afternoon to discuss the new budget proposal, and then we "
    "will walk over to the old library downtown."
)


def said(seq: int, channel: str, text: str, s: float, e: float, speaker: str | None) -> Event:
    body = {"v": 1, "id": f"1f2e-{channel}-{seq}", "text": text, "channel": channel}
    body |= {"stream_start": s, "stream_end": e}
    if speaker is not None:
        body["speaker"] = speaker
    return Event(TOPIC_TRANSCRIPT, seq, body)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def caption(tmp_path, events, speakers=None, clock=None, name="c"):
    files = [CueFile(tmp_path / f"{name}.srt", "srt"), CueFile(tmp_path / f"{name}.vtt", "vtt")]
    out = io.StringIO()
    captioner = Captioner(
        Timeline(),
        files=files,
        view=TerminalView(out, interactive=False),
        speakers=speakers or Speakers(),
        reorder=Reorder(clock=clock or Clock()),
    )
    for event in events:
        captioner.handle(event)
    captioner.close()
    return tmp_path / f"{name}.srt", tmp_path / f"{name}.vtt", out.getvalue()


def test_each_cue_carries_its_speaker_in_both_files_and_the_terminal(tmp_path):
    events = [
        said(1, "mic", LONG, 1.0, 7.0, "me"),
        said(2, "system", "Fish & chips <b>bold</b> --> arrow", 8.0, 10.0, "A&B <x>"),
    ]
    srt, vtt, printed = caption(tmp_path, events)
    srt_cues = read_captions(srt)
    assert len(srt_cues) == 3  # the long utterance became two cues, each labelled
    assert [c.lines[0].split(": ")[0] for c in srt_cues] == ["me", "me", "A&B <x>"]
    assert srt_cues[2].lines == ("A&B <x>: Fish & chips <b>bold</b> ->", "arrow")
    # the label's room is kept: no line, label included, is over 42 characters
    assert all(len(line) <= 42 for c in srt_cues for line in c.lines)
    read_captions(vtt)
    voices = vtt_voices(vtt)
    assert [v for v, _ in voices] == ["me", "me", "A&amp;B &lt;x&gt;"]  # escaped in the span
    assert voices[2][1] == "Fish &amp; chips &lt;b&gt;bold&lt;/b&gt; --&gt;\narrow"
    assert " ".join(t.replace("\n", " ") for _, t in voices[:2]) == LONG  # no label in the text
    assert printed.splitlines()[0].startswith("[00:00:01] me: Our team")
    assert printed.splitlines()[-1] == "[00:00:08] A&B <x>: Fish & chips <b>bold</b> --> arrow"


def test_without_a_speaker_the_files_are_exactly_as_before(tmp_path):
    """One unlabelled source: `channel` is there, `speaker` is not; nothing new shows."""
    events = [said(1, "mic", LONG, 1.0, 7.0, None), said(2, "mic", "short", 8.0, 9.0, None)]
    srt, vtt, printed = caption(tmp_path, events)
    old = [  # the same transcripts as a daemon before channels sent them
        Event(TOPIC_TRANSCRIPT, e.seq, {k: v for k, v in e.body.items() if k != "channel"})
        for e in events
    ]
    srt0, vtt0, printed0 = caption(tmp_path, old, name="old")
    assert srt.read_text() == srt0.read_text() and vtt.read_text() == vtt0.read_text()
    assert printed == printed0
    assert "<v" not in vtt.read_text() and ": " not in srt.read_text().split("\n")[2]
    assert vtt_voices(vtt)[0][0] is None


def test_speakers_can_be_renamed_or_hidden_on_the_client(tmp_path):
    events = [said(1, "mic", "hello", 1.0, 2.0, "me"), said(2, "system", "hi", 3.0, 4.0, "them")]
    renamed = Speakers(parse_renames(["them=Alice", "mic=Bob"]))
    srt, _, _ = caption(tmp_path, events, renamed, name="renamed")
    assert [c.text for c in read_captions(srt)] == ["Bob: hello", "Alice: hi"]
    srt, vtt, _ = caption(tmp_path, events, Speakers(hidden=True), name="hidden")
    assert [c.text for c in read_captions(srt)] == ["hello", "hi"]
    assert [v for v, _ in vtt_voices(vtt)] == [None, None]


@pytest.mark.parametrize(
    ("value", "message"),
    [("Alice", "LABEL=NAME"), ("them=", "LABEL=NAME"), ("=x", "LABEL=NAME")],
)
def test_bad_renames_say_how_to_write_them(value, message):
    with pytest.raises(ValueError, match=message):
        parse_renames([value])
    with pytest.raises(ValueError, match="twice"):
        parse_renames(["a=b", "a=c"])


def test_a_hostile_speaker_name_is_one_short_plain_line(tmp_path):
    name = "evil\x1b[2J\nname\u202e" + "x" * 100
    srt, vtt, printed = caption(tmp_path, [said(1, "mic", "words", 1.0, 2.0, name)])
    label = read_captions(srt)[0].lines[0].split(": ")[0]
    assert label.startswith("evil[2J name") and len(label) == 32 and label.endswith("…")
    assert "\x1b" not in printed and "\u202e" not in vtt.read_text()


def test_two_channels_finals_out_of_order_are_written_in_time_order(tmp_path):
    """Your "yes" (8-9 s) is final before their sentence (5-10 s): the files still list theirs
    first; a final later than the window is written, in order, at the last cue's start."""
    clock = Clock()
    files = [CueFile(tmp_path / "m.srt", "srt"), CueFile(tmp_path / "m.vtt", "vtt")]
    captioner = Captioner(Timeline(), files=files, reorder=Reorder(window_s=10.0, clock=clock))
    captioner.handle(said(1, "system", "good morning everyone", 0.5, 2.0, "them"))
    clock.now = 1.0
    captioner.handle(said(2, "mic", "morning", 2.5, 3.0, "me"))  # a second channel: held now
    clock.now = 2.0
    captioner.handle(said(3, "mic", "yes", 8.0, 9.0, "me"))
    clock.now = 3.5
    captioner.handle(said(4, "system", "so the plan for today is this", 5.0, 10.0, "them"))
    assert len(read_captions(tmp_path / "m.srt")) == 1  # the rest wait for the window
    clock.now = 12.0
    captioner.tick()
    clock.now = 30.0
    captioner.handle(said(5, "system", "sorry I was late", 4.0, 4.5, "them"))  # far too late
    captioner.close()
    for path in files:
        cues = read_captions(path.path, overlap=True)
        assert [c.start for c in cues] == sorted(c.start for c in cues)
    cues = read_captions(tmp_path / "m.srt", overlap=True)
    assert [c.text for c in cues] == [
        "them: good morning everyone",
        "me: morning",
        "them: so the plan for today is this",
        "me: yes",  # starts inside their sentence: the two cues overlap, as the speech did
        "them: sorry I was late",
    ]
    assert (cues[2].start, cues[3].start) == (5.0, 8.0) and cues[3].start < cues[2].end
    assert cues[4].start == 10.0  # late: after the last cue written and its channel's last
    assert [v for v, _ in vtt_voices(tmp_path / "m.vtt")] == ["them", "me", "them", "me", "them"]


def test_one_channel_is_written_at_once_and_never_overlaps(tmp_path):
    files = [CueFile(tmp_path / "one.srt", "srt")]
    captioner = Captioner(Timeline(CaptionOptions()), files=files, reorder=Reorder(clock=Clock()))
    captioner.handle(said(1, "mic", "first", 1.0, 3.0, "me"))
    assert len(read_captions(tmp_path / "one.srt")) == 1  # nothing held with one channel
    captioner.handle(said(2, "mic", "second", 2.0, 4.0, "me"))
    captioner.close()
    first, second = read_captions(tmp_path / "one.srt")
    assert second.start >= first.end


def test_cues_without_a_label_wrap_exactly_as_before_and_long_texts_stay_fast():
    """The label-aware wrapper gives textwrap's own lines when no room is kept (random texts
    with long words, hyphens and short lines), and a 1 MB text is cut in linear time."""
    rng = random.Random(16)
    for _ in range(300):
        words = ["".join(rng.choices("abc-", k=rng.choice([1, 3, 8, 30]))) for _ in range(40)]
        text, width = " ".join(words), rng.choice([10, 13, 42])
        options = CaptionOptions(line_chars=width, max_lines=rng.choice([1, 2, 3]))
        lines = wrap(text, width)
        expected = [
            lines[i : i + options.max_lines] for i in range(0, len(lines), options.max_lines)
        ]
        assert cue_groups(text, options) == expected, (text, width)
    started = time.monotonic()
    cues = split_cues("word " * 200_000, 0.0, 10.0, CaptionOptions(), speaker="them")
    assert time.monotonic() - started < 5.0 and len(cues) > 1000


def test_the_terminal_screen_labels_captions_and_partials():
    out = io.StringIO()
    captioner = Captioner(Timeline(), view=TerminalView(out, interactive=True))
    captioner.handle(said(1, "system", "good morning", 1.0, 2.0, "them"))
    body = {"v": 1, "id": "1f2e-mic-2", "text": "half of", "channel": "mic", "speaker": "me"}
    captioner.handle(Event(TOPIC_PARTIAL, 2, body))
    screen = out.getvalue().rpartition("\x1b[2J")[2]
    assert "them: good morning" in screen and "me: half of" in screen


def test_words_said_during_a_long_utterance_go_between_its_cues(tmp_path):
    """Their long sentence (2-10 s) ends first, so its final comes first; you started talking
    at 6 s and went on until 12 s. Its second cue waits for yours, which is written between
    its cues at its own time; cues are numbered in the order written."""
    clock = Clock()
    path = tmp_path / "between.srt"
    captioner = Captioner(
        Timeline(), files=[CueFile(path, "srt")], reorder=Reorder(window_s=10.0, clock=clock)
    )
    captioner.handle(said(1, "mic", "hello", 0.0, 1.0, "me"))
    captioner.handle(said(2, "system", LONG, 2.0, 10.0, "them"))
    clock.now = 3.0
    captioner.handle(said(3, "mic", "well actually I think", 6.0, 12.0, "me"))
    clock.now = 10.5
    assert [c.start for c in captioner.tick()] == [2.0]  # their second cue waits for yours
    clock.now = 13.5
    captioner.tick()
    captioner.close()
    cues = read_captions(path, overlap=True)
    assert [c.text.split(":")[0] for c in cues] == ["me", "them", "me", "them"]
    assert cues[2].text == "me: well actually I think" and cues[2].start == 6.0
    assert cues[1].start == 2.0 and cues[3].end == 10.0 and cues[3].start > 6.0


def test_a_raw_hostile_name_cannot_add_a_cue_to_a_file():
    """format_cue is safe whoever calls it (review of issue 16): a name holding a blank line
    and a timing line stays on the cue's first line."""
    from dictated.clients.captions.cues import Cue
    from dictated.clients.captions.writers import format_cue

    name = "Eve\n\n2\n00:00:00,000 --> 00:00:09,000\nboss"
    cue = Cue(1, 0.0, 1.0, ("hello there",), speaker=name)
    for fmt in ("srt", "vtt"):
        block = format_cue(cue, fmt)
        assert block.count("\n\n") == 1 and block.endswith("\n\n"), block  # still one cue
        assert "-->" in block.splitlines()[1] and "-->" not in block.split("\n", 2)[2], block

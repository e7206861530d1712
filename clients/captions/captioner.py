"""From the daemon's events to captions: one timeline, fanned out to files, the terminal and the page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from dictated.protocol import (
    TOPIC_ERROR,
    TOPIC_PARTIAL,
    TOPIC_STATUS,
    TOPIC_TRANSCRIPT,
    Event,
    escape_controls,
    plain_text,
)

from ..speakers import Speakers
from .cues import Cue, Timeline, Utterance, split_cues
from .reorder import Reorder
from .terminal import TerminalView
from .web import Caption, CaptionFeed
from .writers import CueFile

log = logging.getLogger(__name__)

#: what the captions follow; other topics are ignored, as the protocol asks
TOPICS = (TOPIC_TRANSCRIPT, TOPIC_STATUS, TOPIC_ERROR, TOPIC_PARTIAL)


@dataclass
class Captioner:
    timeline: Timeline
    files: Sequence[CueFile] = ()
    view: TerminalView | None = None
    feed: CaptionFeed | None = None
    speakers: Speakers = field(default_factory=Speakers)
    reorder: Reorder = field(default_factory=Reorder)
    transcripts: int = field(default=0, init=False)
    _shown_state: tuple[str, str] | None = field(default=None, init=False)

    def handle(self, event: Event) -> list[Cue]:
        """Route one event; returns the cues a transcript became.

        Text is made plain first (controls and bidi overrides dropped, breaks made spaces): a
        newline would end an SRT cue early and ESC would drive the terminal view.
        """
        body = event.body
        if isinstance(body.get("text"), str):
            body = {**body, "text": plain_text(body["text"])}
        if event.topic == TOPIC_TRANSCRIPT:
            self.transcripts += 1
            located = {**body, "seq": event.seq}
            utterance = self.timeline.locate(located, self.speakers.of(body))
            if utterance is None:
                return self.tick()
            cut, written = self._write(self.reorder.push(utterance))
            # the live views show it now; the files may hold it back to keep time order
            cues = cut.get(id(utterance)) or self._preview(utterance)
            if self.view:
                self.view.cues(cues)
            if self.feed:
                caption = Caption(
                    event.seq,
                    str(body.get("id", "")),
                    " ".join(utterance.text.split()),
                    cues[0].start,
                    cues[-1].end,
                    utterance.speaker,
                )
                self.feed.add(caption)
            return written
        if event.topic == TOPIC_STATUS and isinstance(body.get("state"), str):
            self.state(body["state"])
        elif event.topic == TOPIC_PARTIAL and isinstance(body.get("text"), str):
            speaker = self.speakers.of(body)
            if self.view:
                self.view.partial(body["text"], speaker)
            if self.feed:
                self.feed.set_partial(str(body.get("id", "")), body["text"], speaker)
        elif event.topic == TOPIC_ERROR:
            log.warning("daemon error: %s", escape_controls(str(body.get("message"))))
        return self.tick()

    def tick(self) -> list[Cue]:
        """Write what has waited long enough for the files (called on every event and idle)."""
        return self._write(self.reorder.due())[1]

    def _write(
        self, utterances: list[Utterance], everything: bool = False
    ) -> tuple[dict[int, list[Cue]], list[Cue]]:
        """Cut due utterances into cues and append to the files what may be written now: the
        cues of each utterance (by its id()), and those written."""
        not_before = self.reorder.written_start
        cut = {id(u): self.timeline.cut(u, not_before) for u in utterances}
        written = self.reorder.order([cue for each in cut.values() for cue in each], everything)
        if written:
            for f in self.files:
                f.append(written)
        return cut, written

    def _preview(self, utterance: Utterance) -> list[Cue]:
        """The cues it will be, for the live views, while the files hold it."""
        options = self.timeline.options
        end = max(utterance.end, utterance.start + options.min_cue_s)
        return split_cues(utterance.text, utterance.start, end, options, 0, utterance.speaker)

    def state(self, state: str, detail: str = "") -> None:
        """The daemon's state (or `waiting` while none answers), shown on the terminal and page."""
        if self._shown_state == (state, detail):
            return
        self._shown_state = (state, detail)
        if self.view:
            self.view.state(f"{state}{': ' + detail if detail else ''}")
        if self.feed:
            self.feed.set_state(state=state, detail=detail)

    def close(self) -> None:
        self._write(self.reorder.flush(), everything=True)
        for f in self.files:
            f.close()
        if self.view:
            self.view.close()

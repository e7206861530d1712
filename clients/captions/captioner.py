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

from .cues import Cue, Timeline
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
            cues = self.timeline.place(body)
            if cues:
                for f in self.files:
                    f.append(cues)
                if self.view:
                    self.view.cues(cues)
                if self.feed:
                    text = " ".join(str(body["text"]).split())
                    self.feed.add(
                        Caption(
                            event.seq, str(body.get("id", "")), text, cues[0].start, cues[-1].end
                        )
                    )
            return cues
        if event.topic == TOPIC_STATUS and isinstance(body.get("state"), str):
            self.state(body["state"])
        elif event.topic == TOPIC_PARTIAL and isinstance(body.get("text"), str):
            if self.view:
                self.view.partial(body["text"])
            if self.feed:
                self.feed.set_partial(str(body.get("id", "")), body["text"])
        elif event.topic == TOPIC_ERROR:
            log.warning("daemon error: %s", escape_controls(str(body.get("message"))))
        return []

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
        for f in self.files:
            f.close()
        if self.view:
            self.view.close()

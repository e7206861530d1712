"""A small Server-Sent Events reader and the two streamed-transcript shapes servers send.

vLLM streams `data: {"object": "transcription.chunk", "choices": [{"delta": {"content": "…"}}]}`
and ends with `data: [DONE]`; OpenAI's API streams `{"type": "transcript.text.delta", "delta": "…"}`
and ends with `{"type": "transcript.text.done", "text": "…"}`. Both are accepted, so partial text
can be shown whichever server answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DONE = "[DONE]"


def iter_events(readline: Callable[[], bytes]) -> Iterator[str]:
    """Yield each event's data (multi-line data joined with newlines) until end of stream.

    `readline` returns one line including its newline, or b"" at end of stream; the caller sets
    read timeouts there, so a stalled server is noticed between lines.
    """
    data: list[str] = []
    while line := readline():
        text = line.decode("utf-8").rstrip("\r\n")
        if not text:  # a blank line dispatches the event
            if data:
                yield "\n".join(data)
                data = []
            continue
        if text.startswith(":"):  # comment / keep-alive
            continue
        name, _, value = text.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream cut after its last data line still delivers it
        yield "\n".join(data)


class StreamFormatError(ValueError):
    """An event that is neither vLLM's nor OpenAI's transcript shape, or an error the server streamed."""


@dataclass
class StreamedText:
    """Accumulates deltas; `done` once the server says the transcript is complete."""

    text: str = ""
    done: bool = False

    def feed(self, data: str) -> str | None:
        """Take one event's data; return the new delta (None for events that add no text)."""
        if data.strip() == DONE:
            self.done = True
            return None
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise StreamFormatError(f"streamed event is not JSON: {data[:80]!r}") from exc
        if not isinstance(event, dict):
            raise StreamFormatError(f"streamed event is not an object: {data[:80]!r}")
        if "error" in event or event.get("object") == "error":
            error = event.get("error", event)
            message = error.get("message", error) if isinstance(error, dict) else error
            raise StreamFormatError(f"the server reported an error mid-stream: {message}")
        kind = event.get("type")
        if kind == "transcript.text.done":  # OpenAI: the whole text, authoritative
            self.text, self.done = str(event.get("text", self.text)), True
            return None
        if kind == "transcript.text.delta":
            delta = str(event.get("delta", ""))
        elif event.get("object") == "transcription.chunk":
            choices = event.get("choices") or [{}]
            delta = str((choices[0].get("delta") or {}).get("content") or "")
            if choices[0].get("finish_reason"):
                self.done = True
        else:
            return None  # other event kinds (usage, logprobs...): ignore, as clients must
        self.text += delta
        return delta or None

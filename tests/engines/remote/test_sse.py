"""The SSE reader and both streamed-transcript shapes (vLLM's and OpenAI's)."""

from __future__ import annotations

import io
import json

import pytest

from dictated.engines.remote.sse import StreamedText, StreamFormatError, iter_events


def events_of(raw: bytes) -> list[str]:
    return list(iter_events(io.BytesIO(raw).readline))


def vllm_chunk(text: str) -> str:
    return json.dumps({"object": "transcription.chunk", "choices": [{"delta": {"content": text}}]})


def test_reader_joins_multiline_data_and_skips_comments_and_other_fields():
    raw = b": keep-alive\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\nid: 3\ndata: c\n\n\n"
    assert events_of(raw) == ["a\nb", "c"]


def test_a_stream_cut_after_data_still_yields_it():
    assert events_of(b"data: last") == ["last"]


def test_vllm_chunks_accumulate_until_done():
    streamed = StreamedText()
    deltas = [streamed.feed(vllm_chunk(t)) for t in ("Hello", " wor", "ld.")]
    assert deltas == ["Hello", " wor", "ld."] and not streamed.done
    assert streamed.feed("[DONE]") is None and streamed.done
    assert streamed.text == "Hello world."


def test_openai_deltas_and_the_done_text_wins():
    streamed = StreamedText()
    streamed.feed(json.dumps({"type": "transcript.text.delta", "delta": "Hel"}))
    streamed.feed(json.dumps({"type": "transcript.text.delta", "delta": "lo"}))
    assert streamed.text == "Hello"
    streamed.feed(json.dumps({"type": "transcript.text.done", "text": "Hello."}))
    assert streamed.done and streamed.text == "Hello."


def test_unknown_events_are_ignored_and_errors_raised():
    streamed = StreamedText()
    assert streamed.feed(json.dumps({"object": "usage", "usage": {}})) is None
    with pytest.raises(StreamFormatError, match="overloaded"):
        streamed.feed(json.dumps({"error": {"message": "overloaded"}}))
    with pytest.raises(StreamFormatError, match="not JSON"):
        streamed.feed("<html>")

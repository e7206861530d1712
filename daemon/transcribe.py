"""`dictated transcribe`: the daemon's segmenter and engine, in-process, over files.

Files are read as a stream (block by block), so a long recording never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .audio.format import SAMPLE_RATE, int16_to_float32
from .audio.load import AudioFile, load_audio
from .engines.base import Engine, Transcript
from .events import SegmenterEvent, UtteranceEnded
from .nonspeech import NonSpeechGuard, transcribe_checked
from .segmenter import Segmenter, SegmenterOptions


@dataclass(frozen=True)
class FileUtterance:
    file: Path
    index: int
    start_s: float  # offsets in the file: the utterance's audio, pre-roll and hangover included
    end_s: float
    reason: str
    transcript: Transcript
    speech_start_s: float = 0.0  # where the speech itself starts and ends (captions use these)
    speech_end_s: float = 0.0

    def to_json(self) -> dict:
        t = self.transcript
        return {
            "file": str(self.file),
            "index": self.index,
            "start": round(self.start_s, 3),
            "end": round(self.end_s, 3),
            "speech_start": round(self.speech_start_s, 3),
            "speech_end": round(self.speech_end_s, 3),
            "text": t.text,
            "language": t.language,
            "reason": self.reason,
            "truncated": t.truncated,
            "tokens": list(t.tokens),
            "timings_ms": {k: round(v, 2) for k, v in t.timings_ms.items()},
        }


def check_files(paths: Iterable[Path]) -> None:
    """Open each file's header, so a missing, unreadable or hostile file is refused (one
    AudioInputError naming it) before the model loads, not after the first file's work."""
    for path in paths:
        AudioFile(path).close()


def transcribe_file(
    path: Path, engine: Engine, language: str, segmenter: SegmenterOptions
) -> Iterator[FileUtterance]:
    """One result per utterance the segmenter finds, in order, as the file is read."""
    audio = AudioFile(path)
    seg = Segmenter(segmenter)
    for block in audio.blocks():
        yield from _transcribed(path, seg.push(block), engine, language)
    yield from _transcribed(path, seg.flush(), engine, language)


def _transcribed(
    path: Path, events: Iterable[SegmenterEvent], engine: Engine, language: str
) -> Iterator[FileUtterance]:
    for event in events:
        if isinstance(event, UtteranceEnded):
            u = event.utterance
            yield FileUtterance(
                path,
                u.index,
                u.start_sample / SAMPLE_RATE,
                u.end_sample / SAMPLE_RATE,
                u.reason,
                transcribe_checked(engine, u, language),  # no text made up from noise
                u.onset_sample / SAMPLE_RATE,
                u.speech_end_sample / SAMPLE_RATE,
            )


def transcribe_whole(path: Path, engine: Engine, language: str) -> FileUtterance:
    """The whole file without VAD, as transformers would: > 35 s splits at the quietest window."""
    from .engines.cohere.chunking import join_texts, split_long_audio

    audio = int16_to_float32(load_audio(path))
    guard = NonSpeechGuard()  # no VAD here: the engine's own no-speech signals judge
    parts = [
        guard.checked(engine.transcribe(chunk, language), None, f"{path} part {i}")
        for i, chunk in enumerate(split_long_audio(audio))
    ]
    timings: dict[str, float] = {}
    for part in parts:
        for key, value in part.timings_ms.items():
            timings[key] = timings.get(key, 0.0) + value
    merged = Transcript(
        text=join_texts([p.text for p in parts], language),
        language=language,
        tokens=tuple(t for p in parts for t in p.tokens),
        timings_ms=timings,
        truncated=any(p.truncated for p in parts),
    )
    return FileUtterance(path, 0, 0.0, len(audio) / SAMPLE_RATE, "end_of_input", merged)

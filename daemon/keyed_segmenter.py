"""Push-to-talk: the key, not the voice, opens and closes an utterance.

`KeyedSegmenter` has the `Segmenter`'s interface (push, flush, open_audio, end_early, idle,
in_speech) so `Capture` swaps it in while a key is held, in either mode:

- a press reports `SpeechStarted` at once, the pre-roll before it included (`Capture` keeps the
  recent audio in a `RecentAudio` ring); no onset wait. In continuous mode a press while the VAD
  already has an utterance open splits it at the pre-roll (`Capture`): the part before ends, and
  this one goes on from there -- or, begun within the pre-roll, takes it over whole (its audio,
  and its id when it was reported started): nothing said is lost, nothing transcribed twice;
- the release ends it at once (reason "key"), no hangover; the final follows as fast as the
  engine allows;
- while held, webrtcvad (with the segmenter's energy gate over a running noise floor) still
  judges each 30 ms frame, only to report `SpeechPaused` / `SpeechResumed` at pauses in the
  speech: the speculative decode runs during the hold, and a release after a pause finds the
  text ready. The voiced frames also say where speech ended, which is what lets that decode
  stand as the final (`Speculation.covers`); `end_early` never applies (the key decides);
- no utterance exceeds `max_utterance_s`: at the cap it is cut at the longest unvoiced run in the
  last `cut_search_ms` and the rest carries on as a new (keyed) utterance.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import webrtcvad

from .audio.format import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .events import (
    EndReason,
    OpenAudio,
    SegmenterEvent,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
    UtteranceEnded,
)
from .segmenter_options import SegmenterOptions

# The "voiced" decision of segmenter.py, restated (that file's internals are its own): webrtcvad
# says speech and the frame is `energy_gate_db` above a noise floor, the mean energy of the frames
# webrtcvad calls non-speech (time constant ~20 frames), snapped down to a much quieter frame.
_FULL_SCALE_ENERGY = 32768.0**2 * FRAME_SAMPLES
_ABSOLUTE_FLOOR = _FULL_SCALE_ENERGY * 10 ** (-70 / 10)  # -70 dBFS: nothing quieter is speech
_FLOOR_ALPHA = 0.05
_FLOOR_SNAP = 10 ** (6 / 10)


def _frames(ms: float) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class Voicing:
    """Is a 30 ms frame voiced? One webrtcvad call and an energy gate per frame."""

    def __init__(self, aggressiveness: int, energy_gate_db: float):
        self._vad = webrtcvad.Vad(aggressiveness)
        self._gate = 10 ** (energy_gate_db / 10)
        self._floor = _FULL_SCALE_ENERGY  # the first frames pull it down

    def __call__(self, frame: bytes) -> bool:
        x = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
        energy = float(np.dot(x, x))
        speech = self._vad.is_speech(frame, SAMPLE_RATE, FRAME_SAMPLES)
        floor = self._floor
        if not speech:
            floor += _FLOOR_ALPHA * (energy - floor)
        floor = max(min(floor, energy * _FLOOR_SNAP), _ABSOLUTE_FLOOR)
        self._floor = floor
        return speech and energy >= floor * self._gate


class RecentAudio:
    """The last `keep_samples` of a channel's stream with their positions: a press's pre-roll,
    and the audio of an utterance the VAD had open when the key went down."""

    def __init__(self, keep_samples: int):
        self._keep = keep_samples
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self._samples = 0
        self.end = 0  # stream position just after the newest sample kept

    @property
    def start(self) -> int:
        return self._blocks[0][0] if self._blocks else self.end

    def add(self, position: int, pcm: np.ndarray) -> None:
        if self._blocks and position != self.end:  # a gap or a pause: what came before is apart
            self.clear()
        if not len(pcm):
            return
        self._blocks.append((position, np.array(pcm, dtype=np.int16)))  # a copy: buffers get reused
        self._samples += len(pcm)
        self.end = position + len(pcm)
        while self._samples - len(self._blocks[0][1]) >= self._keep:
            self._samples -= len(self._blocks.popleft()[1])

    def between(self, first: int, last: int) -> tuple[int, np.ndarray]:
        """The samples kept from `first` up to `last` (clamped to what is kept), and where they
        begin."""
        first = max(first, self.start)
        last = min(last, self.end)
        parts = [
            pcm[max(0, first - at) : last - at]
            for at, pcm in self._blocks
            if at < last and at + len(pcm) > first
        ]
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return first, pcm

    def clear(self) -> None:
        self._blocks.clear()
        self._samples = 0


class KeyedSegmenter:
    """The utterance of one key press (see the module doc). Not thread-safe: the loop owns it."""

    def __init__(self, options: SegmenterOptions, start_sample: int):
        self.options = options
        self._voicing = Voicing(options.aggressiveness, options.energy_gate_db)
        self._pause = _frames(options.pause_ms)
        self._min_voiced = math.ceil(options.min_speech_ms / FRAME_MS)
        self._max_frames = options.max_frames
        self._search = _frames(options.cut_search_ms)
        self._preroll = _frames(options.preroll_ms)
        self.utterances_emitted = 0
        self._partial = b""
        self._open = False
        self._pos = start_sample  # stream offset of the next frame's first sample
        self._reset(start_sample, start_sample)

    @classmethod
    def press(
        cls,
        options: SegmenterOptions,
        start_sample: int,
        pcm: np.ndarray,
        *,
        continues: bool = False,
        paused: bool = False,
    ) -> tuple[KeyedSegmenter, list[SegmenterEvent]]:
        """The key went down at `start_sample + len(pcm)`; `pcm` is what came before it (the
        pre-roll, or the utterance the VAD had open). `continues`: that utterance was reported
        started already (no second `SpeechStarted`); `paused`: and its last report was a pause."""
        keyed = cls(options, start_sample)
        press = start_sample + len(pcm)
        keyed._open = True
        keyed._reset(start_sample, press)
        events: list[SegmenterEvent] = [] if continues else [SpeechStarted(start_sample, press)]
        keyed._feed(pcm.tobytes(), events, quiet=True)  # judged, so pauses are known from here
        if continues and keyed._start == start_sample:  # its onset: where its voicing began
            first = keyed._flags.find(1)
            keyed._onset = start_sample + max(0, first - 1) * FRAME_SAMPLES if first >= 0 else press
        if keyed._voiced == 0:
            keyed._speech_end = keyed._onset
        keyed._paused = paused
        return keyed, events

    # -- the Segmenter interface ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return False  # a key is held: every block counts at once

    @property
    def in_speech(self) -> bool:
        return self._open

    @property
    def stream_samples(self) -> int:
        return self._pos + len(self._partial) // 2

    def open_audio(self) -> OpenAudio | None:
        if not self._open:
            return None
        pcm = np.frombuffer(bytes(self._audio), dtype=np.int16)
        return OpenAudio(pcm, self._start, self._speech_end)

    def end_early(self, start_sample: int, heard_until: int, hangover_ms: int) -> list:
        return []  # the release ends a keyed utterance, never a speculative guess

    def push(self, pcm: np.ndarray) -> list[SegmenterEvent]:
        events: list[SegmenterEvent] = []
        if self._open:  # once ended, it is done: a key still held opens a new one (Capture)
            self._feed(pcm.tobytes(), events)
        return events

    def release(self) -> list[SegmenterEvent]:
        """The key came up: the utterance ends here, with every sample pushed so far."""
        return self._end("key")

    def flush(self) -> list[SegmenterEvent]:
        """End of input, a pause or a device gap: end the utterance here."""
        return self._end("end_of_input")

    # -- frames -----------------------------------------------------------------------------------

    def _feed(self, data: bytes, events: list[SegmenterEvent], quiet: bool = False) -> None:
        data = self._partial + data if self._partial else data
        n = len(data) // FRAME_BYTES
        for k in range(n):
            self._frame(data[k * FRAME_BYTES : (k + 1) * FRAME_BYTES], events, quiet)
        self._partial = data[n * FRAME_BYTES :]

    def _frame(self, frame: bytes, events: list[SegmenterEvent], quiet: bool) -> None:
        voiced = self._voicing(frame)
        start = self._pos
        self._pos += FRAME_SAMPLES
        self._audio += frame
        self._flags.append(voiced)
        if voiced:
            self._voiced += 1
            self._speech_end = self._pos
            if self._paused:
                self._paused = False
                if not quiet:
                    events.append(SpeechResumed(start))
        elif (
            not self._paused
            and self._voiced >= self._min_voiced
            and self._pos - self._speech_end >= self._pause * FRAME_SAMPLES
        ):
            self._paused = True
            if not quiet:
                events.append(SpeechPaused(self._speech_end))
        if len(self._flags) >= self._max_frames:
            self._cut(events)

    # -- utterances -------------------------------------------------------------------------------

    def _reset(self, start: int, onset: int) -> None:
        self._audio = bytearray()
        self._flags = bytearray()
        self._start = start
        self._onset = onset
        self._voiced = 0
        self._speech_end = onset
        self._paused = False

    def _end(self, reason: EndReason) -> list[SegmenterEvent]:
        if not self._open:
            return []
        self._audio += self._partial
        self._pos += len(self._partial) // 2
        self._partial = b""
        self._open = False
        event = self._ended(bytes(self._audio), self._speech_end, reason)
        self._reset(self._pos, self._pos)
        return [event]

    def _ended(self, audio: bytes, speech_end: int, reason: EndReason) -> UtteranceEnded:
        onset = min(self._onset, self._start + len(audio) // 2)
        utterance = Utterance(
            index=self.utterances_emitted,
            pcm=np.frombuffer(audio, dtype=np.int16),
            start_sample=self._start,
            speech_end_sample=max(speech_end, onset),  # never before the press
            reason=reason,
            speech_start_sample=onset,
            by_key=True,
        )
        self.utterances_emitted += 1
        return UtteranceEnded(utterance)

    def _cut(self, events: list[SegmenterEvent]) -> None:
        """At the length cap: end the utterance at the best pause nearby; the rest carries on."""
        cut = self._cut_frame()
        flags = self._flags
        last = flags.rfind(1, 0, cut)
        speech_end = self._start + (last + 1) * FRAME_SAMPLES if last >= 0 else self._start
        events.append(
            self._ended(bytes(self._audio[: cut * FRAME_BYTES]), speech_end, "max_length")
        )
        rest_audio, rest_flags = self._audio[cut * FRAME_BYTES :], flags[cut:]
        start = self._start + cut * FRAME_SAMPLES
        first, last = rest_flags.find(1), rest_flags.rfind(1)
        onset = start + max(0, first - 1) * FRAME_SAMPLES if first >= 0 else start
        self._reset(start, onset)
        self._audio, self._flags = rest_audio, rest_flags
        self._voiced = sum(rest_flags)
        self._speech_end = start + (last + 1) * FRAME_SAMPLES if last >= 0 else start
        events.append(SpeechStarted(start, onset))

    def _cut_frame(self) -> int:
        """First frame of the part carried on: after the longest unvoiced run of the last
        `cut_search_ms` (leaving up to the pre-roll of it before what follows), else at the cap."""
        n = len(self._flags)
        best_len, best_end, run = 0, n, 0
        for k in range(max(1, n - self._search), n + 1):
            if k < n and self._flags[k] == 0:
                run += 1
                continue
            if run > best_len:
                best_len, best_end = run, k
            run = 0
        return best_end - min(self._preroll, best_len // 2)

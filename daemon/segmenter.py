"""Cut a 16 kHz int16 stream into utterances on 30 ms frames: webrtcvad gates, Silero decides.

webrtcvad judges one frame at a time and keeps calling frames speech for a few frames after any
transient (its overhang), so one keyboard click reads as three or four voiced frames; music and
steady typing it calls speech outright. The segmenter therefore never acts on a single frame.
Per frame it keeps one decision, "voiced": webrtcvad says speech, the frame is `energy_gate_db`
above the noise floor (which strips the overhang that follows a click) *and*, with
`vad = "silero"`, Silero's speech probability clears its threshold (speech_prob.py; Silero only
runs once the cheap gate has passed, so silence costs no inference; when it turns on late, the
few gated frames before count as voiced too). Over those decisions it keeps two sliding windows:

- an utterance starts when at least `start_ratio` of the last `start_window_ms` is voiced; it
  reaches back to where that speech began, plus `preroll_ms`, so first words are not clipped;
- speech continues while at least `end_ratio` of the last `end_window_ms` is voiced -- a lower
  ratio over a longer window (hysteresis), so one unvoiced frame, a gap between words or noisy
  speech that is half unvoiced changes nothing, while clicks and short bursts stay below it;
- the utterance ends once speech has not been going on for `hangover_ms` (the end window takes
  ~0.2 s to fall below its ratio after the last voiced frame, so with the defaults an utterance
  closes ~0.8 s after speech stops) -- but not within `pause_ms` of a voiced frame: resumed
  speech is still refilling the end window, and closing then would cut off the next sentence's
  start, which would begin without its pre-roll; `SpeechPaused` is reported after `pause_ms`
  without a voiced frame, counted from the last voiced frame itself (not the lagging end
  window), and `SpeechResumed` at the next voiced frame -- where speculative decoding starts
  and is cancelled;
- `end_early` lets the open utterance end sooner than the hangover (when a speculative decode
  says its text ends a sentence), unless speech came after what that decode heard;
- utterances with fewer than `min_speech_ms` of voiced frames are blips and are dropped
  (`SpeechStarted` is only reported once an utterance has that much, so no start dangles);
- no utterance exceeds `max_utterance_s`: at the cap it is cut at the longest unvoiced run (the
  least-speech frame when there is none) in the last `cut_search_ms` and the rest carries on.

This runs for every 30 ms of audio all day, so the per-frame path is integer bookkeeping around
one webrtcvad call; numpy runs once per push (frame energies) and at the rare length cut.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque

import numpy as np
import webrtcvad

from .audio.format import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .errors import AudioError
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
from .segmenter_cut import cut_frame, onset_index
from .segmenter_options import SegmenterOptions
from .speech_prob import SileroStage, gated_mean

__all__ = ["Segmenter", "SegmenterOptions"]

log = logging.getLogger(__name__)

# Frame energies are sums of squares over one 480-sample frame.
_FULL_SCALE_ENERGY = 32768.0**2 * FRAME_SAMPLES
# Below -70 dBFS RMS nothing is speech (digital silence, a muted input); also the lowest the noise
# floor estimate may fall, so the relative gate means something over digital silence.
_ABSOLUTE_FLOOR = _FULL_SCALE_ENERGY * 10 ** (-70 / 10)
# The noise floor is the mean energy of the frames webrtcvad calls non-speech (an exponential
# average with a time constant of ~20 frames, 0.6 s): the mean, not the minimum, because in
# fluctuating (pink, fan, street) noise the minimum sits far below the frames a click's overhang
# is made of. A frame far quieter than the estimate (the room went quiet, or the very first frame)
# pulls it straight down to _FLOOR_SNAP above that frame.
_FLOOR_ALPHA = 0.05
_FLOOR_SNAP = 10 ** (6 / 10)
# Frames whose energies push() computes in one numpy pass (~1 MB of float32 at a time).
_ENERGY_BATCH = 512
# How far before the start window an utterance's onset is looked for (see onset_index).
_ONSET_LOOKBACK_MS = 1000


def _frames(ms: float) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class Segmenter:
    """Feed PCM with `push`, get SpeechStarted / SpeechPaused / UtteranceEnded events back.

    Not thread-safe: one owner (the daemon's loop) pushes. `flush` at end of input or shutdown.
    """

    def __init__(self, options: SegmenterOptions | None = None, start_sample: int = 0):
        """`start_sample`: the stream offset of the first sample pushed (a segmenter started
        after a pause continues the source's timeline, so positions stay source positions)."""
        self.options = options = options or SegmenterOptions()
        self._vad = webrtcvad.Vad(options.aggressiveness)
        self._ws = ws = _frames(options.start_window_ms)
        self._we = we = _frames(options.end_window_ms)
        self._start_count = math.ceil(options.start_ratio * ws - 1e-9)
        self._end_count = math.ceil(options.end_ratio * we - 1e-9)
        self._hangover = _frames(options.hangover_ms)
        self._pause = min(_frames(options.pause_ms), self._hangover)
        self._pause_s = self._pause * FRAME_SAMPLES
        self._min_voiced = math.ceil(options.min_speech_ms / FRAME_MS)
        self._max_frames = options.max_frames
        self._search = _frames(options.cut_search_ms)
        self._preroll_frames = _frames(options.preroll_ms)
        self._gate = 10 ** (options.energy_gate_db / 10)
        self._floor = _FULL_SCALE_ENERGY  # noise floor estimate; the first frames pull it down
        self._stage = (
            SileroStage(options.speech_threshold, options.speech_threshold_end, ws)
            if options.vad == "silero"
            else None
        )

        self.frames_processed = 0  # 30 ms frames judged by webrtcvad since creation
        self.voiced_frames = 0  # of which voiced: webrtcvad, the energy gate (and Silero) agreed
        self.utterances_emitted = 0
        self.blips_dropped = 0
        self.length_cuts = 0

        self._partial = b""  # bytes of a frame not yet complete
        self._pos = start_sample  # stream offset (samples) of the next frame's first sample
        # The last max(ws, we) decisions in a ring; both windows' voiced counts kept incrementally.
        self._dn = max(ws, we)
        self._decisions = bytearray(self._dn)
        self._di = 0
        self._scount = 0
        self._ecount = 0
        # Before an utterance: enough recent frames to find where the speech that triggered a
        # start really began (scattered voicing can precede the trigger) and go pre-roll further.
        keep = self._preroll_frames + ws + _frames(_ONSET_LOOKBACK_MS)
        self._ring_audio: deque[bytes] = deque(maxlen=keep)
        self._ring_flags: deque[int] = deque(maxlen=keep)
        self._ring_extra: deque[tuple[int, int]] = deque(maxlen=keep)  # (gate, probability byte)
        self._ring_start = start_sample  # stream offset of the ring's oldest frame
        self._open = False
        self._reset_utterance()

    # -- public API ---------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No utterance under way and no voiced frame in the start window: nothing is decided
        soon, so audio may arrive in larger blocks (fewer wakeups) without delaying an end."""
        return not self._open and self._scount == 0

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and the UtteranceEnded that closes it."""
        return self._open and self._confirmed

    @property
    def stream_samples(self) -> int:
        """Samples consumed so far (complete frames plus any buffered partial frame)."""
        return self._pos + len(self._partial) // 2

    def current_audio(self) -> np.ndarray:
        """A copy of the open utterance so far (empty when none is open), for speculative decoding."""
        if not self._open:
            return np.zeros(0, dtype=np.int16)
        return np.frombuffer(bytes(self._audio), dtype=np.int16)

    def open_audio(self) -> OpenAudio | None:
        """The confirmed utterance under way (a copy of its audio and where it is), else None."""
        if not self.in_speech:
            return None
        return OpenAudio(self.current_audio(), self._start, self._speech_end)

    def end_early(
        self, start_sample: int, heard_until: int, hangover_ms: int
    ) -> list[SegmenterEvent]:
        """End the open utterance `hangover_ms` after its last voiced frame instead of after the
        full hangover -- if it is still the one that starts at `start_sample` and no voiced frame
        came after `heard_until` (the end of the audio a speculative decode heard).

        Returns the events of closing it now when that point has passed already; otherwise it
        closes at the frame that reaches it, and any voiced frame before then cancels this.
        """
        if not self.in_speech or self._start != start_sample or self._speech_end > heard_until:
            return []
        self._early_end = self._speech_end + _frames(hangover_ms) * FRAME_SAMPLES
        events: list[SegmenterEvent] = []
        if self._pos >= self._early_end:
            self._close("silence", events)
        return events

    def push(self, pcm: np.ndarray) -> list[SegmenterEvent]:
        """Consume int16 mono samples of any length; return the events they complete, in order."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            if isinstance(pcm, np.ndarray):
                kind = f"a {pcm.dtype} array of shape {pcm.shape}"
            else:
                kind = type(pcm).__name__
            raise AudioError(f"segmenter expects 1-D int16 PCM at {SAMPLE_RATE} Hz, got {kind}")
        events: list[SegmenterEvent] = []
        data = self._partial + pcm.tobytes() if self._partial else pcm.tobytes()
        n = len(data) // FRAME_BYTES
        for first in range(0, n, _ENERGY_BATCH):  # batches bound the float copy of a huge push
            count = min(_ENERGY_BATCH, n - first)
            x = np.frombuffer(
                data, dtype=np.int16, count=count * FRAME_SAMPLES, offset=first * FRAME_BYTES
            )
            x = x.astype(np.float32).reshape(count, FRAME_SAMPLES)
            energies = np.einsum("ij,ij->i", x, x).tolist()  # one numpy pass per batch
            for k in range(count):
                off = (first + k) * FRAME_BYTES
                self._frame(data[off : off + FRAME_BYTES], energies[k], events)
        self._partial = data[n * FRAME_BYTES :]
        return events

    def flush(self) -> list[SegmenterEvent]:
        """End of input or shutdown: close the open utterance (reason `end_of_input`).

        A trailing partial frame joins the open utterance unjudged. An utterance that has not yet
        reached `min_speech_ms` of voicing is a blip and is dropped, as it would be mid-stream.
        The stream position carries on, so pushing after a flush keeps offsets monotonic.
        """
        events: list[SegmenterEvent] = []
        if self._open:
            self._audio += self._partial
            self._close("end_of_input", events)
        self._pos += len(self._partial) // 2
        self._partial = b""
        self._decisions[:] = bytes(self._dn)
        self._scount = self._ecount = 0
        self._ring_audio.clear()
        self._ring_flags.clear()
        self._ring_extra.clear()
        if self._stage is not None:
            self._stage.reset()
        return events

    # -- per-frame path -----------------------------------------------------------------------

    def _frame(self, frame: bytes, energy: float, events: list[SegmenterEvent]) -> None:
        # Every frame goes through webrtcvad: it adapts its own noise model on all of them.
        speech = self._vad.is_speech(frame, SAMPLE_RATE, FRAME_SAMPLES)
        floor = self._floor
        if not speech:
            floor += _FLOOR_ALPHA * (energy - floor)
        if energy * _FLOOR_SNAP < floor:
            floor = energy * _FLOOR_SNAP
        if floor < _ABSOLUTE_FLOOR:
            floor = _ABSOLUTE_FLOOR
        self._floor = floor
        voiced = gate = 1 if speech and energy >= floor * self._gate else 0
        prob = lag = 0
        if self._stage is not None:
            voiced, p, lag = self._stage.judge(frame, gate, self._open)
            prob = int(p * 255 + 0.5)

        start = self._pos
        self._pos += FRAME_SAMPLES
        self.frames_processed += 1
        self.voiced_frames += voiced
        ring, i, n = self._decisions, self._di, self._dn
        self._scount += voiced - ring[(i - self._ws) % n]  # the decision leaving each window
        self._ecount += voiced - ring[(i - self._we) % n]
        ring[i] = voiced
        self._di = i + 1 if i + 1 < n else 0
        if lag:  # Silero turned on late: the frames of its onset count as voiced too
            self._voice_lag(lag, i)

        if not self._open:
            if not self._ring_audio:
                self._ring_start = start
            elif len(self._ring_audio) == self._ring_audio.maxlen:
                self._ring_start += FRAME_SAMPLES
            self._ring_audio.append(frame)
            self._ring_flags.append(voiced)
            self._ring_extra.append((gate, prob))
            if self._scount >= self._start_count:
                self._begin(events)
            return

        self._audio += frame
        self._flags.append(voiced)
        self._probs.append(prob)
        self._gates.append(gate)
        if voiced:
            self._voiced += 1
            self._speech_end = self._pos
            self._early_end = None  # speech went on: a shortened hangover no longer applies
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(start))
        elif (
            # once per unvoiced stretch, when nothing has been voiced for pause_ms
            not self._paused
            and self._confirmed
            and self._pos - self._speech_end >= self._pause * FRAME_SAMPLES
        ):
            self._paused = True
            events.append(SpeechPaused(self._speech_end))
        if self._ecount >= self._end_count:
            self._quiet = 0
        else:
            self._quiet += 1
            # not while speech has just resumed: the end window is still refilling
            if self._quiet >= self._hangover and self._pos - self._speech_end >= self._pause_s:
                self._close("silence", events)
                return
        if self._early_end is not None and self._pos >= self._early_end:
            self._close("silence", events)
            return
        if not self._confirmed and self._voiced >= self._min_voiced:
            self._confirm(events)
        if len(self._flags) >= self._max_frames:
            self._cut(events)

    def _voice_lag(self, lag: int, i: int) -> None:
        """Mark the `lag` frames before ring slot `i` voiced (see SileroStage.judge)."""
        ring, n = self._decisions, self._dn
        flags = self._flags if self._open else self._ring_flags
        for k in range(1, min(lag, len(flags)) + 1):
            if k < n and not ring[(i - k) % n]:  # still in a window (a short one may be past)
                ring[(i - k) % n] = 1
                self._scount += k < self._ws
                self._ecount += k < self._we
            if not flags[-k]:
                self.voiced_frames += 1
                flags[-k] = 1
                self._voiced += self._open

    # -- utterance bookkeeping ------------------------------------------------------------------

    def _reset_utterance(self) -> None:
        self._audio = bytearray()
        self._flags = bytearray()  # voiced decision per frame of the open utterance
        self._probs = bytearray()  # Silero's probability per frame, 0-255 (0 without Silero)
        self._gates = bytearray()  # whether webrtcvad and the energy gate passed each frame
        self._start = 0
        self._onset_sample: int | None = None  # detected speech onset (no pre-roll), once known
        self._voiced = 0
        self._speech_end = 0
        self._quiet = 0
        self._paused = False
        self._confirmed = False
        self._early_end: int | None = None  # stream offset where end_early closes the utterance

    def _begin(self, events: list[SegmenterEvent]) -> None:
        self._open = True
        flags = self._ring_flags
        # Speech usually begins partway into the frame before the first voiced one, so the
        # pre-roll is counted from that frame.
        onset = max(0, onset_index(flags, self._ws) - 1)
        extra = self._ring_extra
        first = max(0, onset - self._preroll_frames)
        self._start = self._ring_start + first * FRAME_SAMPLES
        self._onset_sample = self._ring_start + onset * FRAME_SAMPLES
        self._audio = bytearray(b"".join(itertools.islice(self._ring_audio, first, None)))
        self._flags = bytearray(itertools.islice(flags, first, None))
        self._probs = bytearray(e[1] for e in itertools.islice(extra, first, None))
        self._gates = bytearray(e[0] for e in itertools.islice(extra, first, None))
        self._voiced = sum(self._flags)
        self._speech_end = self._start + (self._flags.rfind(1) + 1) * FRAME_SAMPLES
        self._quiet = 0
        self._ring_audio.clear()
        self._ring_flags.clear()
        self._ring_extra.clear()
        if self._voiced >= self._min_voiced:
            self._confirm(events)

    def _confirm(self, events: list[SegmenterEvent]) -> None:
        self._confirmed = True
        if self._onset_sample is None:  # the part carried on after a length cut
            # like _begin: speech begins in the frame before the first voiced one
            self._onset_sample = self._start + max(0, self._flags.find(1) - 1) * FRAME_SAMPLES
        events.append(SpeechStarted(self._start, self._onset_sample))
        log.debug("speech started at sample %d", self._start)

    def _close(self, reason: EndReason, events: list[SegmenterEvent]) -> None:
        if self._confirmed:
            self._emit(bytes(self._audio), self._speech_end, reason, events)
        else:
            self.blips_dropped += 1
            log.debug("dropped a blip of %d voiced frames at sample %d", self._voiced, self._start)
        # The unvoiced tail seeds the next pre-roll, so speech that resumes soon after still gets
        # its full pre-roll; utterances may overlap there, but never in voiced audio.
        n = len(self._flags)
        first = max(self._flags.rfind(1) + 1, n - self._ring_audio.maxlen)
        self._ring_audio.clear()
        self._ring_flags.clear()
        self._ring_extra.clear()
        for k in range(first, n):
            self._ring_audio.append(bytes(self._audio[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]))
            self._ring_flags.append(0)
            self._ring_extra.append((0, self._probs[k]))
        if self._stage is not None:
            self._stage.reset()
        self._ring_start = self._start + first * FRAME_SAMPLES
        # The next utterance needs voicing of its own to start.
        self._decisions[:] = bytes(self._dn)
        self._scount = self._ecount = 0
        self._open = False
        self._reset_utterance()

    def _emit(
        self, audio: bytes, speech_end: int, reason: EndReason, events: list[SegmenterEvent]
    ) -> None:
        """Report the open utterance (from `_start`, onset `_onset_sample`) as ended."""
        start = self._start
        utt = Utterance(
            index=self.utterances_emitted,
            pcm=np.frombuffer(audio, dtype=np.int16),
            start_sample=start,
            speech_end_sample=speech_end,
            reason=reason,
            speech_start_sample=self._onset_sample,
            speech_prob=self._speech_prob(speech_end),
        )
        self.utterances_emitted += 1
        events.append(UtteranceEnded(utt))
        log.debug(
            "utterance %d: %.2f s from sample %d (%s)", utt.index, utt.duration_s, start, reason
        )

    def _speech_prob(self, speech_end: int) -> float | None:
        """Silero's mean over the gated frames from the onset to the last voiced one (or None)."""
        if self._stage is None:
            return None
        a = ((self._onset_sample or self._start) - self._start) // FRAME_SAMPLES
        b = (speech_end - self._start) // FRAME_SAMPLES
        return gated_mean(self._probs[a:b], self._gates[a:b])

    def _cut(self, events: list[SegmenterEvent]) -> None:
        """At the length cap: end the utterance at the best pause nearby, carry the rest on."""
        cut = cut_frame(self._flags, self._probs, self._audio, self._search, self._preroll_frames)
        flags = self._flags
        head_end = self._start + cut * FRAME_SAMPLES
        last = flags.rfind(1, 0, cut)
        speech_end = self._start + (last + 1) * FRAME_SAMPLES if last >= 0 else self._start
        self.length_cuts += 1
        if self._confirmed:
            head = bytes(self._audio[: cut * FRAME_BYTES])
            self._emit(head, speech_end, "max_length", events)
        else:
            self.blips_dropped += 1
        # The remainder is an utterance of its own, already under way.
        self._audio = self._audio[cut * FRAME_BYTES :]
        self._flags = flags[cut:]
        self._probs = self._probs[cut:]
        self._gates = self._gates[cut:]
        self._start = head_end
        self._onset_sample = None  # found when this part is confirmed
        self._early_end = None  # a speculative decode heard the head, not this part
        self._voiced = sum(self._flags)
        last = self._flags.rfind(1)
        self._speech_end = self._start + (last + 1) * FRAME_SAMPLES if last >= 0 else head_end
        self._confirmed = False
        if self._voiced >= self._min_voiced:
            self._confirm(events)

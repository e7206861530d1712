"""Silero VAD v6 speech probabilities for the segmenter's 30 ms frames, one stream per channel.

webrtcvad calls music and keyboard clicks speech (80-100 % of their frames), so an utterance
stays open until the music stops and a stretch of clicks reaches the engine. Silero tells them
apart (about 0 % speech on music, typing and a fan; most frames of speech), for ~0.1 ms per
32 ms window. It runs behind webrtcvad: the segmenter wakes it on a frame webrtcvad (and the
energy gate) passes, and it sleeps again once the channel is idle, so silence costs what it did.

The model (shipped inside faster-whisper's wheel) takes 512-sample windows at 16 kHz with the
64 samples before each as context, plus an LSTM state carried from window to window. Windows are
contiguous; a frame takes the probability of the latest window completed by the end of it (at
most one window, 32 ms, behind). The onnxruntime session is stateless and shared by every
channel of the process (one intra-op thread: per-window calls are too small to split); the state,
the context and the partial window belong to one `SpeechProb` per segmenter.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from .audio.format import FRAME_SAMPLES, SAMPLE_RATE
from .errors import ConfigError
from .silero_model import model_path

__all__ = ["SileroStage", "SpeechProb", "gated_mean"]

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms), fixed by the model
CONTEXT = 64  # samples of the previous window prepended to each, fixed by the model
_STATE_SHAPE = (1, 1, 128)  # the LSTM's h and c
# Frames of audio before a wake fed to a fresh state first, so the LSTM has settled on the room
# before the frame that woke it (from zero state its first windows read low on any input).
WARMUP_FRAMES = 6  # 180 ms
# Silero reads speech 1-4 frames after it begins; the gated frames right before the first voiced
# one over which its probability was rising (at most this many) are the onset's (see judge).
ONSET_LAG_FRAMES = 3

_session: Any = None
_session_lock = threading.Lock()


def shared_session() -> Any:
    """The process's one onnxruntime session for Silero, created on first use."""
    global _session
    with _session_lock:
        if _session is None:
            try:
                import onnxruntime
            except ImportError as exc:
                raise ConfigError(
                    'segmenter.vad = "silero" needs onnxruntime; install it or set '
                    'segmenter.vad = "webrtc"'
                ) from exc
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.enable_cpu_mem_arena = False
            opts.log_severity_level = 4
            _session = onnxruntime.InferenceSession(
                str(model_path()), providers=["CPUExecutionProvider"], sess_options=opts
            )
        return _session


class SpeechProb:
    """Per-channel Silero stream: `frame` gives each 30 ms frame's speech probability.

    Asleep it only remembers the last few frames (no inference); `wake` starts a fresh state
    primed with them. While awake every frame must go through `frame`, voiced or not, so the
    windows stay contiguous. Not thread-safe: the segmenter's owner drives it.
    """

    def __init__(self) -> None:
        self._session = shared_session()
        self.awake = False
        self.windows_run = 0  # model calls since creation (for the idle-cost checks)
        self._recent: deque[bytes] = deque(maxlen=WARMUP_FRAMES)
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._buf = np.zeros(CONTEXT + WINDOW, dtype=np.float32)  # context + window being filled
        self._fill = CONTEXT
        self._prob = 0.0
        # frames noted since a sleep that kept the state (None: the state is stale, wake fresh)
        self._missed: int | None = None

    def wake(self) -> None:
        """Carry on after a short sleep that kept the state: feed just the frames it missed (the
        windows stay contiguous, as if it had never slept). Otherwise start a fresh stream (a
        new utterance's worth), primed with the frames just heard."""
        self.awake = True
        if self._missed is not None:
            for frame in list(self._recent)[len(self._recent) - self._missed :]:
                self._feed(frame)
            return
        self._h[:] = 0.0
        self._c[:] = 0.0
        self._buf[:] = 0.0
        self._fill = CONTEXT
        self._prob = 0.0
        for frame in self._recent:
            self._feed(frame)

    def sleep(self, keep: bool = False) -> None:
        """Stop inference; `keep`: a wake within WARMUP_FRAMES carries on with this state
        (under music the gate flickers, and priming afresh each time cost more windows than
        the audio has)."""
        self.awake = False
        self._missed = 0 if keep else None

    def note(self, frame: bytes) -> None:
        """Asleep: remember the frame for the next wake's warm-up (no inference)."""
        self._recent.append(frame)
        if self._missed is not None:
            self._missed = self._missed + 1 if self._missed < WARMUP_FRAMES else None

    def frame(self, frame: bytes) -> float:
        """Awake: feed one 30 ms frame; the probability of the latest window completed so far."""
        self._recent.append(frame)
        self._feed(frame)
        return self._prob

    def _feed(self, frame: bytes) -> None:
        x = np.frombuffer(frame, dtype=np.int16).astype(np.float32) * (1 / 32768)
        done = 0
        while done < FRAME_SAMPLES:
            take = min(FRAME_SAMPLES - done, CONTEXT + WINDOW - self._fill)
            self._buf[self._fill : self._fill + take] = x[done : done + take]
            self._fill += take
            done += take
            if self._fill == CONTEXT + WINDOW:
                self._run()

    def _run(self) -> None:
        out, self._h, self._c = self._session.run(
            None, {"input": self._buf[None, :], "h": self._h, "c": self._c}
        )
        self._prob = float(out.reshape(-1)[0])
        self.windows_run += 1
        self._buf[:CONTEXT] = self._buf[-CONTEXT:]
        self._fill = CONTEXT


class SileroStage:
    """The segmenter's per-frame decision with Silero behind the webrtcvad gate.

    A frame is voiced when the gate passes and Silero's probability clears `start` (or, while
    speech is going on, the lower `end`: hysteresis, so a word's soft end does not flicker). The
    stream wakes fresh on a gated frame and sleeps once no gated frame came for `sleep_after`
    frames outside an utterance, or when an utterance closes (`reset`): one state per utterance.
    """

    def __init__(self, start: float, end: float, sleep_after: int) -> None:
        self.stream = SpeechProb()
        self._start, self._end, self._sleep_after = start, end, sleep_after
        self._on = False  # Silero's own hysteresis state
        self._since_gate = sleep_after  # frames since the gate last passed
        # (gate, voiced, probability) of the frames just judged since the wake, newest last
        self._recent: deque[tuple[int, int, float]] = deque(maxlen=ONSET_LAG_FRAMES)

    def judge(self, frame: bytes, gate: int, open_: bool) -> tuple[int, float, int]:
        """(voiced 0/1, probability, lag) for one frame; asleep, (0, 0.0, 0) without inference.

        `lag`: when this frame turns speech on, how many frames right before it (at most
        ONSET_LAG_FRAMES) were the speech's own onset -- gated, with Silero's probability rising
        towards the threshold it reaches late -- and so count as voiced too. Without them a
        short word (0.3-0.45 s) would fall below min_speech_ms and be dropped as a blip.
        """
        stream = self.stream
        self._since_gate = 0 if gate else self._since_gate + 1
        if not stream.awake:
            if not gate:
                stream.note(frame)
                return 0, 0.0, 0
            stream.wake()
            self._on = False
            self._recent.clear()
        p = stream.frame(frame)
        self._on = p >= (self._end if self._on else self._start)
        if not open_ and self._since_gate >= self._sleep_after:
            stream.sleep(keep=True)
        voiced = 1 if gate and self._on else 0
        lag = 0
        if voiced and (not self._recent or not self._recent[-1][1]):
            later = p
            for g, v, q in reversed(self._recent):
                if not g or v or q > later:
                    break
                lag, later = lag + 1, q
        self._recent.append((gate, voiced, p))
        return voiced, p, lag

    def reset(self) -> None:
        """An utterance closed: the next one starts from a fresh state."""
        self.stream.sleep()


def gated_mean(probs: bytes, gates: bytes) -> float:
    """An utterance's speech probability: the mean over its frames the webrtcvad gate passed.

    Pauses between words and sentences are mostly ungated, so they do not dilute it (over all
    frames, real speech with pauses scored ~0.5); noise that passes the gate (music, clicks)
    scores what Silero makes of it. `probs` are 0-255 bytes; 0.0 when no frame passed the gate.
    """
    total = n = 0
    for p, g in zip(probs, gates, strict=True):
        if g:
            total += p
            n += 1
    return total / (255 * n) if n else 0.0


def probabilities(pcm: np.ndarray) -> np.ndarray:
    """Per-frame probabilities of a whole int16 signal from one fresh stream (tests, benches)."""
    sp = SpeechProb()
    sp.wake()
    raw = pcm.tobytes()
    n = len(raw) // (2 * FRAME_SAMPLES)
    return np.array(
        [sp.frame(raw[i * 2 * FRAME_SAMPLES : (i + 1) * 2 * FRAME_SAMPLES]) for i in range(n)]
    )


assert SAMPLE_RATE == 16000, "Silero's window sizes are for 16 kHz"

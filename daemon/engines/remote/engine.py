"""`--engine remote`: each utterance is one request to an OpenAI-compatible transcription server.

Any server of that API works (vLLM, speaches, LocalAI, whisper.cpp's server with its inference
path). Requests go to the least-loaded server in service (see pool.py); a server that fails is
sat out and the utterance goes to the next one. When none answers, `transcribe` raises
RemoteError, which the daemon's worker turns into its usual error event with the audio saved,
unless `fallback = "whisper"` transcribes it here instead. Thread-safe: the pool and clients lock,
and the local fallback is used by one thread at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...audio.format import SAMPLE_RATE
from ...errors import ConfigError, RemoteError
from ..base import Engine, EngineOptions, Transcript, check_cancelled
from .client import RequestFailed, TranscriptionClient, Upload
from .options import RemoteOptions
from .pool import ServerHealth, ServerPool
from .wav import encode_wav, probe_tone

log = logging.getLogger(__name__)

#: The language goes to the server as given; which ones it knows depends on the served model. The
#: list is Whisper's 99 (the widest model family these servers run; Cohere's 14 are among them), so
#: a typo is caught here and a language the model lacks is refused by the server.
_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my "
    "ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt "
    "uk ur uz vi yi yo yue zh"
)
LANGUAGES: tuple[str, ...] = tuple(_CODES.split())

#: Fast speech is ~20-25 characters a second (English ~7 syllables/s; German's long words). Twice
#: that plus a margin (numbers, punctuation, a short clip) is beyond any real transcript: a longer
#: answer is a model repeating itself or a hostile server, cut there and marked truncated (as a
#: local engine's text is when it hits its token limit), so it cannot flood the journal.
MAX_CHARS_PER_S = 50
MAX_CHARS_MARGIN = 200


def max_chars(samples: int) -> int:
    """The most text an utterance of `samples` (16 kHz) may have: 35 s -> 1950 characters."""
    return MAX_CHARS_MARGIN + MAX_CHARS_PER_S * samples // SAMPLE_RATE


def _restart_cannot_fix(failure: RequestFailed) -> bool:
    """A 4xx other than 408/429: the key, URL or model is wrong, which no waiting changes."""
    status = failure.status
    return status is not None and 400 <= status < 500 and status not in (408, 429)


class RemoteEngine(Engine):
    name = "remote"
    languages = LANGUAGES
    #: a speculative decode is one more request to a server others share: on only when asked
    #: (`speculation.mode = "on"`); with `stream = true` partials come from the final's own request
    speculate_by_default = False

    def __init__(self, options: RemoteOptions):
        self.options = options
        self.streams_partials = options.stream
        api_key = options.resolved_api_key()
        options.check_api_key_transport(api_key)
        self._clients = {
            url: TranscriptionClient(
                options.endpoint(url), api_key, options.timeout_s, options.connect_timeout_s
            )
            for url in options.urls
        }
        self.pool = ServerPool(options.urls, options.backoff_s, options.max_backoff_s)
        self._fallback: Engine | None = None
        self._fallback_lock = threading.Lock()

    @classmethod
    def load(cls, options: EngineOptions) -> RemoteEngine:
        remote = options.remote
        if not remote.urls:
            raise ConfigError(
                "engine.remote.urls: the remote engine needs a server, e.g. "
                "--remote-url http://127.0.0.1:8000/v1 (see docs/remote.md)"
            )
        log.info(
            "remote: %s, model %s, timeout %g s%s",
            ", ".join(remote.urls),
            remote.model or "(server default)",
            remote.timeout_s,
            ", fallback whisper" if remote.fallback == "whisper" else "",
        )
        return cls(remote)

    @classmethod
    def unavailable_reason(cls, options: EngineOptions) -> str | None:
        """Cheap (no network): doctor and status probe the servers with `health()`."""
        return None if options.remote.urls else "no server configured (engine.remote.urls)"

    def transcribe(
        self,
        pcm: np.ndarray,
        language: str | None = None,
        cancel: threading.Event | None = None,
        on_partial: Callable[[str], None] | None = None,
    ) -> Transcript:
        """Transcribe one utterance on a server.

        `on_partial(text_so_far)` is called from this thread as streamed text arrives, when
        `stream = true` and the server streams (the hook for partial results). Should a server
        fail mid-stream, the next one starts over, so the text seen by `on_partial` may shrink.
        """
        language = self.check_language(language)
        check_cancelled(cancel)  # a request once sent runs to its end; a cancelled one is discarded
        started = time.perf_counter()
        upload = Upload(
            self._fields(language), encode_wav(pcm), self.options.stream, max_chars(len(pcm))
        )
        encoded = time.perf_counter()
        failures: list[str] = []
        tried: set[str] = set()
        while (url := self.pool.acquire(frozenset(tried))) is not None:
            tried.add(url)
            try:
                reply = self._clients[url].post(upload, on_partial if upload.stream else None)
            except RequestFailed as exc:
                failures.append(f"{url}: {exc.reason}")
                if exc.server_fault:
                    self.pool.failed(url, exc.reason, exc.retry_after_s)
                    continue
                self.pool.released(url)
                break  # the request itself was refused: another server would refuse it too
            except BaseException:  # e.g. the on_partial callback raised: free the slot, pass it on
                self.pool.released(url)
                raise
            self.pool.succeeded(url, reply.elapsed_ms)
            log.debug("remote: %s answered in %.0f ms", url, reply.elapsed_ms)
            if reply.truncated:
                log.warning(
                    "remote: %s answered more text than %.1f s of audio can hold; cut at %d "
                    "characters and marked truncated",
                    url,
                    len(pcm) / SAMPLE_RATE,
                    upload.max_chars,
                )
            return Transcript(
                text=reply.text,
                language=language,
                truncated=reply.truncated,
                timings_ms={
                    "encode": (encoded - started) * 1000,
                    "request": reply.elapsed_ms,
                    "total": (time.perf_counter() - started) * 1000,
                },
            )
        failures += [h.describe() for h in self.pool.health() if h.url not in tried]
        reason = "no transcription server answered: " + "; ".join(failures)
        if self.options.fallback == "whisper":
            log.warning("remote: %s; transcribing locally with whisper", reason)
            return self._transcribe_locally(pcm, language)
        raise RemoteError(reason)

    def health(self) -> tuple[ServerHealth, ...]:
        """Probe every server now with a real (short) transcription; what doctor and warm-up use.

        The probes run concurrently, each bounded by `timeout_s`, and update the pool: a server
        that answers is back in service, one that does not is sat out.
        """
        self._probe()
        return self.pool.health()

    def _probe(self) -> dict[str, RequestFailed | None]:
        """One probe request to each server, concurrently: each one's failure, None if it answered."""
        tone = probe_tone()
        upload = Upload(
            self._fields(self.default_language), encode_wav(tone), False, max_chars(len(tone))
        )

        def probe(url: str) -> RequestFailed | None:
            self.pool.begin(url)
            try:
                reply = self._clients[url].post(upload)
            except RequestFailed as exc:
                self.pool.failed(url, exc.reason, exc.retry_after_s)
                return exc
            self.pool.succeeded(url, reply.elapsed_ms)
            return None

        with ThreadPoolExecutor(len(self._clients), thread_name_prefix="remote-probe") as ex:
            return dict(zip(self._clients, ex.map(probe, self._clients), strict=True))

    def warmup(self) -> None:
        """A real request to each server. Unless whisper is the fallback (it then transcribes
        until a server answers), raises RemoteError when none answers (the daemon waits and tries
        again: at login the network may not be up yet), and ConfigError when every server
        refused the request itself (bad key, URL or model)."""
        failures = self._probe()
        for h in self.pool.health():
            log.info("remote: warm-up %s", h.describe())
        if any(f is None for f in failures.values()):
            return
        reason = "warm-up: no transcription server answered: " + "; ".join(
            f"{url}: {f.reason}" for url, f in failures.items() if f is not None
        )
        refused = all(f is not None and _restart_cannot_fix(f) for f in failures.values())
        hint = " (check the URL, engine.remote.model and the API key)" if refused else ""
        if self.options.fallback != "whisper":
            if refused:  # waiting or restarting would only ask again
                raise ConfigError(f"engine.remote: {reason}{hint}")
            raise RemoteError(reason)
        # the user asked for local transcription whenever the servers fail: this is such a time
        log.warning("remote: %s%s; whisper will transcribe until a server answers", reason, hint)
        with self._fallback_lock:
            self._local().warmup()

    def status_info(self) -> dict:
        info: dict = {"servers": [h.to_json() for h in self.pool.health()]}
        if self.options.fallback == "whisper":
            info["fallback"] = "whisper"
        return info

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        with self._fallback_lock:
            if self._fallback is not None:
                self._fallback.close()

    def _fields(self, language: str) -> tuple[tuple[str, str], ...]:
        model = (("model", self.options.model),) if self.options.model else ()
        return (
            *model,
            ("language", language),
            ("temperature", "0"),
            ("response_format", "json"),
            *self.options.extra_fields(),
        )

    def _local(self) -> Engine:
        """The embedded Whisper, loaded the first time it is needed (call with the lock held)."""
        if self._fallback is None:
            from ..whisper import WhisperEngine

            self._fallback = WhisperEngine.load(EngineOptions())
        return self._fallback

    def _transcribe_locally(self, pcm: np.ndarray, language: str) -> Transcript:
        with self._fallback_lock:
            local = self._local()
            try:
                language = local.check_language(language)
            except ValueError as exc:
                raise RemoteError(f"no server answered, and the local fallback: {exc}") from exc
            transcript = local.transcribe(pcm, language)
        return dataclasses.replace(transcript, engine=local.name)

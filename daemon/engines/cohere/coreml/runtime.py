"""CoreML runtime for Cohere Transcribe: encoder bucket(s) + one decoder, any published flavour.

Everything that can differ between packages is read from their signatures (`signature`):
the decoder flavour (stateful State API; cache-external v1 with a growing attention mask; v2 with a
fixed additive causal mask), input dtypes, the KV capacity, encoder frame counts, whether the
decoder frames are fixed (published: 438) or flexible (our export), and whether `logits` are raw or
log-softmax. Each step's inputs are built exactly per `contract.py` (docs/coreml.md, "Decoder flavours").

Only `CoreMLBackend` touches CoreML (load, `predict`, `make_state`), so Linux tests substitute a
stand-in that executes the TorchScript modules the packages were converted from, and everything
else here — bucket choice, padding, masks, positions, state threading — runs unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dictated.errors import ConfigError, MissingDependencyError, ModelError
from dictated.install_hint import pip_install_extra

from ..runtime import CohereRuntime, DecoderSession, EncoderOutput
from . import contract
from .contract import DecoderFlavour
from .models import EncoderBucket, ModelLayout
from .signature import TensorSpec, weight_precision

log = logging.getLogger(__name__)

COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")


class LoadedModel(Protocol):
    def predict(
        self, inputs: Mapping[str, np.ndarray], state: Any = None
    ) -> Mapping[str, np.ndarray]: ...

    def make_state(self) -> Any: ...


class CoreMLBackend(Protocol):
    """The seam around CoreML itself: load a package, predict, make states."""

    def load(self, path: Path, compute_units: str) -> LoadedModel: ...


class CoreMLToolsBackend:
    """Real CoreML through coremltools (macOS); .mlpackage files go through the compile cache."""

    def __init__(self, cache_dir: Path):
        from .compile import CompileCache

        self.cache = CompileCache(Path(cache_dir) / "coreml")

    def load(self, path: Path, compute_units: str) -> LoadedModel:
        try:
            import coremltools as ct
        except ImportError as exc:
            raise MissingDependencyError(
                "coremltools", "the cohere-coreml engine", pip_install_extra("coreml")
            ) from exc
        compiled = path if path.suffix == ".mlmodelc" else self.cache.compiled(path)
        units = getattr(ct.ComputeUnit, compute_units.upper())
        try:
            return _CoreMLModel(ct.models.CompiledMLModel(str(compiled), compute_units=units))
        except Exception as exc:  # coremltools raises plain Exceptions
            raise ModelError(
                f"CoreML could not load {path}: {exc}. Run `dictated models verify`"
            ) from exc


class _CoreMLModel:
    def __init__(self, model):
        self.model = model

    def predict(self, inputs, state=None):
        if state is None:
            return self.model.predict(dict(inputs))
        return self.model.predict(dict(inputs), state=state)

    def make_state(self):
        return self.model.make_state()


def _cast(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=spec.dtype)


class CoreMLRuntime(CohereRuntime):
    """A loaded encoder-bucket set and decoder; one instance per engine, used by one thread."""

    def __init__(self, layout: ModelLayout, backend: CoreMLBackend, compute_units: str = "all"):
        if compute_units not in COMPUTE_UNITS:
            raise ConfigError(
                f"compute_units: {compute_units!r} is not one of {', '.join(COMPUTE_UNITS)}"
            )
        self.layout = layout
        self.flavour = layout.flavour
        sig = layout.decoder_signature
        self.decoder_precision = weight_precision(sig)
        scores = sig.metadata.get(contract.META_SCORES) or self.flavour.default_scores
        self.scores_are_log_probs = scores == "log_softmax"
        self.num_layers = _count_layers(
            sig.states if self.flavour is DecoderFlavour.STATEFUL else sig.inputs
        )
        self.max_positions = self._capacity()
        self.encoders: tuple[EncoderBucket, ...] = layout.encoders
        self.decoder_units = self._decoder_units(compute_units)

        log.info(
            "CoreML models in %s: encoder buckets %s s, %s decoder (%s, %d positions, %s)",
            layout.root,
            ", ".join(f"{b.seconds:g}" for b in self.encoders),
            self.flavour,
            self.decoder_precision,
            self.max_positions,
            "log-softmax" if self.scores_are_log_probs else "raw logits",
        )
        self._encoder_models = {
            b.feature_frames: backend.load(b.path, compute_units) for b in self.encoders
        }
        self.decoder = backend.load(layout.decoder, self.decoder_units)

    # -- construction helpers ----------------------------------------------------------------

    def _capacity(self) -> int:
        sig = self.layout.decoder_signature
        if self.flavour is DecoderFlavour.STATEFUL:
            capacity = sig.states[contract.k_cache(0)].shape[2]
            mask_max = sig.input(contract.DEC_ATTENTION_MASK).max_size(3)
            return capacity if mask_max == -1 else min(capacity, mask_max)
        return sig.input(contract.k_cache(0)).shape[2]

    def _decoder_units(self, requested: str) -> str:
        crash_prone = (
            self.flavour is not DecoderFlavour.STATEFUL and self.decoder_precision == "int8"
        )
        if crash_prone and requested == "all":
            log.warning(
                "int8 cache-external decoders crash on GPU/Neural Engine; running the decoder on CPU only"
            )
            return "cpu_only"
        if crash_prone and requested != "cpu_only":
            log.warning(
                "compute_units=%s: int8 cache-external decoders were reported to crash there",
                requested,
            )
        return requested

    # -- CohereRuntime --------------------------------------------------------------------------

    def max_feature_frames(self) -> int:
        return self.encoders[-1].feature_frames

    def bucket_for(self, valid_frames: int) -> EncoderBucket:
        """The smallest encoder bucket that holds `valid_frames` feature frames."""
        for bucket in self.encoders:
            if valid_frames <= bucket.feature_frames:
                return bucket
        raise ValueError(
            f"{valid_frames} feature frames exceed the largest encoder bucket ({self.encoders[-1].feature_frames})"
        )

    def encode_cost(self, valid_frames: int) -> float:
        """An encoder pass costs its bucket's length (the smallest that fits), not the audio's."""
        try:
            bucket = self.bucket_for(valid_frames)
        except ValueError:
            return 1.0
        return bucket.feature_frames / self.max_feature_frames()

    def encode(self, features: np.ndarray, valid_frames: int) -> EncoderOutput:
        bucket = self.bucket_for(valid_frames)
        frames = bucket.feature_frames
        spec = bucket.signature.input(contract.ENC_FEATURES)
        padded = np.zeros(
            (spec.shape[1], frames), dtype=spec.dtype
        )  # (n_mels, F): frames beyond valid are 0
        keep = min(valid_frames, features.shape[0], frames)
        padded[:, :keep] = features[:keep].T
        length_spec = bucket.signature.input(contract.ENC_FEATURE_LENGTH)
        out = self._encoder_models[frames].predict(
            {
                contract.ENC_FEATURES: padded[None],
                contract.ENC_FEATURE_LENGTH: _cast(
                    length_spec, np.array([valid_frames]).reshape(length_spec.shape)
                ),
            }
        )
        hidden = np.asarray(out[contract.ENC_HIDDEN])
        total = int(hidden.shape[1])
        return EncoderOutput(
            hidden=hidden,
            valid_frames=self.valid_encoder_frames(valid_frames, bucket),
            total_frames=total,
        )

    @staticmethod
    def valid_encoder_frames(feature_length: int, bucket: EncoderBucket) -> int:
        """Encoder frames carrying audio, from the bucket's shapes.

        When the package's frame counts follow the x8 convolution stack (3500 -> 438, 500 -> 63),
        its exact arithmetic is used: what the encoder's own mask and transformers compute. The
        contract's clamp(ceil(L * E / F), 1, E) never drops a valid frame but, as F/8 is not
        whole, often counts one padded frame too many (L=8: 2 for an encoder output of 1); it
        remains the rule for any other frame ratio.
        """
        f, e = bucket.feature_frames, bucket.encoder_frames
        if contract.subsampled_frames(f) == e:
            return max(1, min(e, contract.subsampled_frames(feature_length)))
        return contract.valid_encoder_frames(feature_length, f, e)

    def start(self, encoded: EncoderOutput) -> DecoderSession:
        if self.flavour is DecoderFlavour.STATEFUL:
            return StatefulSession(self, encoded)
        return CacheExternalSession(self, encoded)

    def warmup(self) -> None:
        """One prediction per encoder bucket and one decoder step, so the first utterance is not slow."""
        for bucket in self.encoders:
            n_mels = bucket.signature.input(contract.ENC_FEATURES).shape[1]
            encoded = self.encode(
                np.zeros((bucket.feature_frames, n_mels), dtype=np.float32), bucket.feature_frames
            )
        self.start(encoded).feed([0])

    def close(self) -> None:
        self._encoder_models.clear()
        self.decoder = None  # type: ignore[assignment]


def _count_layers(tensors: Mapping[str, TensorSpec]) -> int:
    n = 0
    while contract.k_cache(n) in tensors and contract.v_cache(n) in tensors:
        n += 1
    if n == 0:
        raise ModelError(f"decoder has no {contract.k_cache(0)} / {contract.v_cache(0)} caches")
    return n


class _Session(DecoderSession):
    """Per-utterance decoder inputs that do not change between steps."""

    def __init__(self, runtime: CoreMLRuntime, encoded: EncoderOutput):
        self.runtime = runtime
        self.position = 0
        sig = runtime.layout.decoder_signature
        self.sig = sig
        hidden_spec = sig.input(contract.DEC_ENCODER_HIDDEN)
        hidden = np.asarray(encoded.hidden)
        frames = hidden.shape[1]
        flexible = len(hidden_spec.ranges) > 1 and hidden_spec.ranges[1] is not None
        target = frames if flexible else hidden_spec.shape[1]
        if frames > target or not hidden_spec.accepts((1, target, hidden.shape[2])):
            raise ModelError(
                f"the decoder takes encoder states shaped {hidden_spec.shape} but the encoder gave "
                f"{hidden.shape}; the encoder and decoder packages do not belong together"
            )
        padded = np.zeros((1, target, hidden.shape[2]), dtype=hidden_spec.dtype)
        padded[:, :frames] = hidden
        cross_spec = sig.input(contract.DEC_CROSS_MASK)
        cross = np.full((1, 1, 1, target), contract.MASK_NEGATIVE, dtype=cross_spec.dtype)
        cross[..., : encoded.valid_frames] = 0
        self.fixed = {contract.DEC_ENCODER_HIDDEN: padded, contract.DEC_CROSS_MASK: cross}
        self.mask_spec = sig.input(contract.DEC_ATTENTION_MASK)

    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        if self.position + len(token_ids) > self.runtime.max_positions:
            raise ValueError(f"decoder positions exhausted ({self.runtime.max_positions})")
        logits = None
        for token in token_ids:
            logits = self._step(int(token))
            self.position += 1
        if logits is None:
            raise ValueError("feed() needs at least one token")
        return np.asarray(logits, dtype=np.float32).reshape(-1)

    def _step(self, token: int) -> np.ndarray:
        raise NotImplementedError

    def _ids(self, name: str, value: int) -> np.ndarray:
        spec = self.sig.input(name)
        return _cast(spec, np.full(spec.shape, value))


class StatefulSession(_Session):
    """State API decoder: one `make_state()` per utterance, `attention_mask` of length step+1."""

    def __init__(self, runtime: CoreMLRuntime, encoded: EncoderOutput):
        super().__init__(runtime, encoded)
        self.state = runtime.decoder.make_state()

    def _step(self, token: int) -> np.ndarray:
        inputs = {
            contract.DEC_INPUT_ID: self._ids(contract.DEC_INPUT_ID, token),
            **self.fixed,
            contract.DEC_ATTENTION_MASK: np.zeros(
                (1, 1, 1, self.position + 1), dtype=self.mask_spec.dtype
            ),
            contract.DEC_POSITION_IDS: self._ids(contract.DEC_POSITION_IDS, self.position),
        }
        return self.runtime.decoder.predict(inputs, state=self.state)[contract.DEC_LOGITS]


class CacheExternalSession(_Session):
    """Caches passed in and returned each step (fresh zeros per utterance); v1 grows the mask, v2
    uses a fixed additive causal mask (0 up to the step, MASK_NEGATIVE beyond)."""

    def __init__(self, runtime: CoreMLRuntime, encoded: EncoderOutput):
        super().__init__(runtime, encoded)
        names = [contract.k_cache(i) for i in range(runtime.num_layers)] + [
            contract.v_cache(i) for i in range(runtime.num_layers)
        ]
        self.caches = {
            n: np.zeros(self.sig.input(n).shape, dtype=self.sig.input(n).dtype) for n in names
        }
        self.v2 = runtime.flavour is DecoderFlavour.CACHE_EXTERNAL_V2

    def _mask(self) -> np.ndarray:
        dtype = self.mask_spec.dtype
        if not self.v2:
            return np.zeros((1, 1, 1, self.position + 1), dtype=dtype)
        slots = self.mask_spec.shape[3]
        mask = np.full((1, 1, 1, slots), contract.MASK_NEGATIVE, dtype=dtype)
        mask[..., : self.position + 1] = 0
        return mask

    def _step(self, token: int) -> np.ndarray:
        inputs = {
            contract.DEC_INPUT_ID: self._ids(contract.DEC_INPUT_ID, token),
            contract.DEC_POSITION_ID: self._ids(contract.DEC_POSITION_ID, self.position),
            **self.fixed,
            contract.DEC_ATTENTION_MASK: self._mask(),
            **self.caches,
        }
        out = self.runtime.decoder.predict(inputs)
        for name in self.caches:
            self.caches[name] = _cast(self.sig.input(name), out[contract.cache_out(name)])
        return out[contract.DEC_LOGITS]

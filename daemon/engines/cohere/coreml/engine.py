"""`--engine cohere-coreml`: Cohere Transcribe on CoreML (macOS, Apple silicon).

The same pipeline as `cohere-torch` (features, greedy decoding policy, tokenizer) over
`CoreMLRuntime`. The models come from `dictated models pull` or `dictated models export`; the EOS
bias follows the decoder's weight precision (4 for int8, 0 otherwise) unless configured.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import ClassVar

from dictated import paths
from dictated.errors import ConfigError, MissingDependencyError, ModelError
from dictated.install_hint import pip_install_extra

from ...base import EngineOptions
from ..engine import CohereEngine
from ..tokenizer import CohereTokenizer
from .contract import DEC_LOGITS, DecoderFlavour
from .models import find_layout, find_packages, installed_models, models_root
from .pull import DEFAULT_VARIANT
from .signature import weight_precision

log = logging.getLogger(__name__)

_NO_MODELS = (
    "no CoreML models found in {root}: run `dictated models pull` (downloads the published "
    "~2.2 GB pair) or `dictated models export --model DIR_OR_REPO`, or pass --model DIR"
)


def resolve_model_dir(model: str | None) -> Path:
    """`model` as a directory, or the name of one under `models_root()` (a pulled variant such as
    `f16`, or `export-int8`); None: the default variant if pulled, else the first installed one."""
    root = models_root()
    if model:
        path = Path(model).expanduser()
        if path.is_dir():
            return path
        if (
            "/" not in model and (root / model).is_dir()
        ):  # a pulled variant or an export's folder name
            return root / model
        raise ModelError(
            f"cohere-coreml: model directory {path} does not exist; " + _NO_MODELS.format(root=root)
        )
    if (root / DEFAULT_VARIANT).is_dir():
        return root / DEFAULT_VARIANT
    installed = installed_models(root)
    if installed:
        return installed[0]
    raise ModelError("cohere-coreml: " + _NO_MODELS.format(root=root))


def load_tokenizer(vocab: Path) -> CohereTokenizer:
    if vocab.name == "tokenizer.model":
        return CohereTokenizer.from_sentencepiece(vocab)
    return CohereTokenizer.from_vocab_json(vocab)


MACOS_FOR_STATEFUL = 15  # CoreML's State API
MACOS_FOR_INT8_ENCODER = 15  # the published int8 encoder (q8/), the default pull's


def macos_problem(layout, release: str) -> str | None:
    """What in `layout` needs a newer macOS than `release` ("14.6"), or None.

    Said up front because CoreML's own load error does not name the cause. Only the published fp16
    encoder with a cache-external decoder runs on macOS 14; `models export` targets macOS 15.
    """
    major = int(release.split(".")[0]) if release else 0
    if major <= 0:
        return None
    needs = []
    if layout.flavour is DecoderFlavour.STATEFUL and major < MACOS_FOR_STATEFUL:
        needs.append(f"the stateful decoder {layout.decoder.name} (CoreML's State API)")
    int8 = [b.path.name for b in layout.encoders if weight_precision(b.signature) == "int8"]
    if int8 and major < MACOS_FOR_INT8_ENCODER:
        needs.append(f"the int8 encoder {', '.join(int8)}")
    if not needs:
        return None
    return (
        f"{' and '.join(needs)} need macOS 15 (this is {release}). Update macOS, or on "
        "macOS 14 use the published fp16 encoder (f16/) with a cache-external decoder"
    )


def _check_macos_version(layout) -> None:
    import platform

    problem = macos_problem(layout, platform.mac_ver()[0])
    if problem:
        raise ModelError(problem)


class CohereCoreMLEngine(CohereEngine):
    """Cohere Transcribe on CoreML (the `[coreml]` extra; macOS 15 for the int8 encoder
    and stateful decoders, 14 for the fp16 encoder with a cache-external decoder)."""

    name: ClassVar[str] = "cohere-coreml"

    @classmethod
    def load(cls, options: EngineOptions) -> CohereCoreMLEngine:
        if sys.platform != "darwin":
            raise ConfigError(
                "engine.name: cohere-coreml runs CoreML, which exists only on macOS; "
                "use cohere-torch or whisper here (`dictated models export` does work on this OS)"
            )
        if importlib.util.find_spec("coremltools") is None:
            raise MissingDependencyError(
                "coremltools", "the cohere-coreml engine", pip_install_extra("coreml")
            )
        from .runtime import CoreMLToolsBackend

        layout = find_layout(resolve_model_dir(options.model))
        _check_macos_version(layout)
        backend = CoreMLToolsBackend(options.cache_dir or paths.cache_dir())
        return cls.from_layout(layout, backend, options)

    @classmethod
    def from_layout(cls, layout, backend, options: EngineOptions) -> CohereCoreMLEngine:
        """Build the engine over any backend (tests pass the TorchScript stand-in)."""
        from .runtime import CoreMLRuntime

        tokenizer = load_tokenizer(layout.vocab)
        vocab = layout.decoder_signature.outputs[DEC_LOGITS].shape[-1]
        if tokenizer.vocab_size != vocab:
            raise ModelError(
                f"{layout.vocab} has {tokenizer.vocab_size} pieces but {layout.decoder.name} outputs {vocab} scores; "
                "the vocabulary does not belong to these models"
            )
        runtime = CoreMLRuntime(layout, backend, options.compute_units)
        return cls(runtime, tokenizer, options)

    def warmup(self) -> None:
        log.info("warming up the CoreML models (first prediction specialises them for this Mac)")
        self.runtime.warmup()
        super().warmup()

    @classmethod
    def unavailable_reason(cls, options: EngineOptions) -> str | None:
        """None only on macOS with coremltools installed and models present locally."""
        if sys.platform != "darwin":
            return "CoreML needs macOS"
        if importlib.util.find_spec("coremltools") is None:
            return f"coremltools is not installed ({pip_install_extra('coreml')})"
        try:
            root = resolve_model_dir(options.model)
        except ModelError as exc:
            return str(exc)
        names = [p.name.lower() for p in find_packages(root)]
        if not any("encoder" in n for n in names) or not any("decoder" in n for n in names):
            return f"{root} has no encoder/decoder packages (run `dictated models verify {root}`)"
        return None

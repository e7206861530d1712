"""`dictated models export`: checkpoint -> encoder buckets + decoder(s) + tokenizer + manifest.

Everything is written into a hidden sibling folder first and moved into place at the end, so a
failed or interrupted export never leaves a half-written model directory that the engine could
pick up. Each stage is logged with its duration: converting the real 2B model takes minutes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dictated.audio.format import MAX_UTTERANCE_S
from dictated.errors import ConfigError, MissingDependencyError, ModelError
from dictated.install_hint import pip_install_extra

from .. import contract
from .. import models as coreml_models

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # feature hop 160 samples at 16 kHz
DEFAULT_BUCKETS_S = (5.0, 10.0, 20.0, MAX_UTTERANCE_S)
DEFAULT_MAX_POSITIONS = 256  # 108 (published) can be exhausted by 35 s of fast speech
PRECISIONS = ("fp16", "int8")
STATEFUL_FILE = "cohere_decoder_stateful.mlpackage"
CACHE_EXTERNAL_FILE = "cohere_decoder_cache_external_v2.mlpackage"
TRACED_DIR = "traced"  # TorchScript of every package, for the Linux stand-in tests (`keep_traced`)


def encoder_file(seconds: float) -> str:
    return f"cohere_encoder_{seconds:g}s.mlpackage"


MIN_POSITIONS = 32  # 10 prompt tokens plus a short sentence


@dataclass(frozen=True)
class ExportOptions:
    model: str  # checkpoint directory or hub repo id (CohereLabs/cohere-transcribe-03-2026)
    out: Path
    precision: str = "fp16"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS_S
    max_positions: int = DEFAULT_MAX_POSITIONS
    stateful: bool = True
    cache_external: bool = False
    revision: str | None = None
    cache_dir: Path | None = None  # hub download cache
    keep_traced: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.max_positions < MIN_POSITIONS:
            raise ConfigError(
                f"max-positions: {self.max_positions} leaves no room for text after the 10-token "
                f"prompt; use at least {MIN_POSITIONS} (default {DEFAULT_MAX_POSITIONS})"
            )


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)
    package_bytes: dict[str, int] = field(default_factory=dict)  # package file -> bytes on disk


def parse_buckets(text: str) -> tuple[float, ...]:
    """ "5,10,20,35" -> (5.0, 10.0, 20.0, 35.0); ConfigError for anything else."""
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(
            f"buckets: {text!r} is not a comma-separated list of seconds, e.g. 5,10,20,35"
        ) from None
    if not values:
        raise ConfigError("buckets: give at least one length in seconds, e.g. 5,10,20,35")
    for value in values:
        if not 0.5 <= value <= MAX_UTTERANCE_S:
            raise ConfigError(
                f"buckets: {value:g} s is outside 0.5..{MAX_UTTERANCE_S:g} s (the model's window)"
            )
    if values[-1] < MAX_UTTERANCE_S:
        raise ConfigError(
            f"buckets: the largest must be {MAX_UTTERANCE_S:g} s, the longest utterance the daemon "
            f"sends (got {text!r}); e.g. 10,{MAX_UTTERANCE_S:g}"
        )
    return tuple(values)


@contextlib.contextmanager
def _stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    log.info("export: %s ...", name)
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start
    log.info("export: %s done in %.1f s", name, seconds[name])


def _require_export_deps() -> None:
    import importlib.util

    for module in ("torch", "transformers", "coremltools"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                module, "`dictated models export`", pip_install_extra("export")
            )


def _prepare_out(out: Path, overwrite: bool) -> Path:
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        is_export = (out / coreml_models.EXPORT_MANIFEST).is_file()
        if not (overwrite and is_export):
            hint = "pass --force to replace it" if is_export else "choose a new or empty directory"
            raise ConfigError(f"out: {out} already contains files; {hint}")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def export_model(options: ExportOptions) -> ExportResult:
    """Convert a Cohere Transcribe checkpoint to CoreML packages in `options.out`."""
    if options.precision not in PRECISIONS:
        raise ConfigError(f"precision: {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if not (options.stateful or options.cache_external):
        raise ConfigError(
            "export: choose at least one decoder flavour (stateful and/or cache-external)"
        )
    _require_export_deps()
    import torch

    from ...checkpoint import resolve_checkpoint
    from ...runtime_torch import load_model

    timings: dict[str, float] = {}
    out = Path(options.out).expanduser()
    staging = _prepare_out(out, options.overwrite)
    try:
        with _stage("load checkpoint", timings):
            model_dir = _checkpoint_dir(options, resolve_checkpoint)
            model = load_model(model_dir, torch.device("cpu"), torch.float32).requires_grad_(False)
        with warnings.catch_warnings():
            # tracing warns about constant shape checks and torch.jit's deprecation; both are
            # expected here (every bucket is traced at its fixed size)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="coremltools")
            manifest = _convert_all(model, model_dir, staging, options, timings)
        with _stage("manifest (sha256 of every file)", timings):
            items = [staging / e["file"] for e in manifest["encoders"] + manifest["decoders"]]
            items += [staging / name for name in manifest["tokenizer"]]
            manifest["files"] = coreml_models.file_records(staging, items)
            coreml_models.write_manifest(staging / coreml_models.EXPORT_MANIFEST, manifest)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    sizes = {
        e["file"]: sum(p.stat().st_size for p in coreml_models.package_files(out / e["file"]))
        for e in manifest["encoders"] + manifest["decoders"]
    }
    log.info(
        "export: wrote %s (%.1f MB) in %.1f s",
        out,
        sum(sizes.values()) / 1e6,
        sum(timings.values()),
    )
    return ExportResult(
        out=out,
        manifest={"format": coreml_models.MANIFEST_FORMAT, **manifest},
        stage_seconds=timings,
        package_bytes=sizes,
    )


def _convert_all(
    model, model_dir: Path, staging: Path, options: ExportOptions, timings: dict[str, float]
) -> dict:
    import coremltools
    import torch
    import transformers

    from . import decoder as dec
    from . import encoder as enc
    from .quantize import quantize_int8

    config = model.config
    n_mels = int(config.encoder_config.num_mel_bins)
    max_positions = min(options.max_positions, int(config.max_position_embeddings))
    if max_positions < options.max_positions:
        log.warning(
            "export: the model has only %d decoder positions; using %d",
            max_positions,
            max_positions,
        )
    int8 = options.precision == "int8"
    with _stage(
        "tokenizer", timings
    ):  # first: a checkpoint without one fails before minutes of work
        tokenizer = _copy_tokenizer(model_dir, staging)
    traced_dir = staging / TRACED_DIR
    traced_files: dict[str, str] = {}

    def save(mlmodel, traced, file: str, role: str, extra: dict[str, str]) -> None:
        if int8:
            mlmodel = quantize_int8(mlmodel, vocab_size=int(config.vocab_size))
        mlmodel.author = "dictated export of Cohere Transcribe"
        mlmodel.short_description = (
            f"Cohere Transcribe {role} ({options.precision}), exported by `dictated models export`"
        )
        mlmodel.user_defined_metadata.update(
            {contract.META_ROLE: role, contract.META_PRECISION: options.precision, **extra}
        )
        mlmodel.save(str(staging / file))
        if options.keep_traced:
            traced_dir.mkdir(exist_ok=True)
            torch.jit.save(traced, str(traced_dir / f"{Path(file).stem}.pt"))
            traced_files[file] = f"{TRACED_DIR}/{Path(file).stem}.pt"

    encoders = []
    for seconds in options.buckets:
        frames = round(seconds * FRAMES_PER_SECOND)
        file = encoder_file(seconds)
        with _stage(f"encoder {seconds:g} s ({frames} frames)", timings):
            traced = enc.trace_encoder(model, frames)
            mlmodel = enc.convert_encoder(traced, n_mels=n_mels, feature_frames=frames, fp16=True)
            save(mlmodel, traced, file, "encoder", {contract.META_BUCKET_S: f"{seconds:g}"})
        encoder_frames = _output_frames(staging / file)
        encoders.append(
            {
                "file": file,
                "seconds": seconds,
                "feature_frames": frames,
                "encoder_frames": encoder_frames,
            }
        )
    max_encoder_frames = max(e["encoder_frames"] for e in encoders)

    decoders = []
    flavours = []
    if options.stateful:
        flavours.append(
            (
                contract.DecoderFlavour.STATEFUL,
                STATEFUL_FILE,
                dec.trace_stateful,
                dec.convert_stateful,
            )
        )
    if options.cache_external:
        flavours.append(
            (
                contract.DecoderFlavour.CACHE_EXTERNAL_V2,
                CACHE_EXTERNAL_FILE,
                dec.trace_cache_external,
                dec.convert_cache_external,
            )
        )
    for flavour, file, trace, convert in flavours:
        with _stage(f"decoder {flavour} ({max_positions} positions)", timings):
            traced = trace(model, max_positions, max_encoder_frames)
            mlmodel = convert(
                traced,
                config=config,
                max_positions=max_positions,
                encoder_frames=max_encoder_frames,
            )
            save(
                mlmodel,
                traced,
                file,
                "decoder",
                {contract.META_FLAVOUR: str(flavour), contract.META_SCORES: "logits"},
            )
        decoders.append(
            {
                "file": file,
                "flavour": str(flavour),
                "scores": "logits",
                "max_positions": max_positions,
                "encoder_frames": max_encoder_frames,
            }
        )

    return {
        "version": 1,
        "source": {
            "kind": "export",
            "model": options.model,
            "revision": options.revision,
            "path": str(model_dir),
        },
        "model": {
            "vocab_size": int(config.vocab_size),
            "d_model": int(config.hidden_size),
            "decoder_layers": int(config.num_hidden_layers),
            "decoder_heads": int(config.num_attention_heads),
            "kv_heads": int(config.num_key_value_heads),
            "head_dim": int(config.head_dim),
            "encoder_hidden": int(config.encoder_config.hidden_size),
            "n_mels": n_mels,
        },
        "precision": options.precision,
        "max_positions": max_positions,
        "encoders": encoders,
        "decoders": decoders,
        "default_decoder": decoders[0]["file"],
        "tokenizer": tokenizer,
        "traced": traced_files,
        "tools": {
            "coremltools": coremltools.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def _checkpoint_dir(options: ExportOptions, resolve_checkpoint) -> Path:
    """A local directory, or the hub repo (at `revision` when given) through the HF cache."""
    if options.revision is None or Path(options.model).expanduser().exists():
        return resolve_checkpoint(options.model, options.cache_dir)
    from dictated.downloads import download_snapshot

    from ...checkpoint import ALLOW_PATTERNS, checkpoint_problem

    path = download_snapshot(
        options.model,
        revision=options.revision,
        allow_patterns=ALLOW_PATTERNS,
        cache_dir=options.cache_dir,
    )
    problem = checkpoint_problem(path)
    if problem:
        raise ModelError(
            f"the download of {options.model}@{options.revision} is incomplete: {problem}"
        )
    return path


def _output_frames(package: Path) -> int:
    from ..signature import read_signature

    return read_signature(package).outputs[contract.ENC_HIDDEN].shape[1]


def _copy_tokenizer(model_dir: Path, staging: Path) -> list[str]:
    """tokenizer.model as is, and vocab.json ({"id": "piece"}, the published layout) copied or built
    from whichever tokenizer the checkpoint has (tokenizer.model, tokenizer.json or vocab.json)."""
    import json

    from ...tokenizer import CohereTokenizer

    tokenizer = CohereTokenizer.from_dir(model_dir)  # ModelError naming what is missing
    written = []
    sp_path, vocab_path = model_dir / "tokenizer.model", model_dir / "vocab.json"
    if sp_path.is_file():
        shutil.copyfile(sp_path, staging / sp_path.name)
        written.append(sp_path.name)
    if vocab_path.is_file():
        shutil.copyfile(vocab_path, staging / vocab_path.name)
    else:
        vocab = {str(i): piece for i, piece in enumerate(tokenizer.pieces)}
        (staging / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    written.append("vocab.json")
    return written

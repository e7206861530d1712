"""Tiny CoreML exports shared by the CoreML test modules (built once per test session).

Each export runs the real `dictated models export` code (coremltools conversion included) on a
tiny seeded Cohere Transcribe checkpoint from `cohere_fixtures`. The decoder has 256 positions, as
our export's default, and the hidden sizes are just large enough (64x64 weights) that int8
quantisation applies to them (coremltools skips tensors under 2048 elements).
"""

from __future__ import annotations

from pathlib import Path

from tests.engines.cohere.fixtures import make_tiny_cohere_dir, train_tiny_tokenizer

BUCKETS = (2.0, 5.0)  # seconds: espeak sentences (~4 s) take the 5 s bucket, a cut clip the 2 s one
MAX_POSITIONS = 256
TINY = {"hidden_size": 64, "encoder_hidden_size": 96, "max_position_embeddings": MAX_POSITIONS}

_models: dict[tuple, Path] = {}
_exports: dict[tuple, Path] = {}


def tiny_model(tmp_path_factory, seed: int = 0, eos_bias: float = 0.0) -> Path:
    key = (seed, eos_bias)
    if key not in _models:
        base = tmp_path_factory.getbasetemp() / "coreml-models"
        tok = base / "tokenizer.model"
        if not tok.exists():
            base.mkdir(parents=True, exist_ok=True)
            train_tiny_tokenizer(tok)
        _models[key] = make_tiny_cohere_dir(
            base / f"seed{seed}-eos{eos_bias:g}",
            seed,
            eos_bias=eos_bias,
            tokenizer_model=tok,
            **TINY,
        )
    return _models[key]


def tiny_export(
    tmp_path_factory,
    *,
    seed: int = 0,
    eos_bias: float = 0.0,
    precision: str = "fp16",
    buckets: tuple[float, ...] = BUCKETS,
    cache_external: bool = True,
) -> Path:
    """An export with both decoder flavours and the traced modules kept for the stand-in."""
    key = (seed, eos_bias, precision, buckets, cache_external)
    if key not in _exports:
        from dictated.engines.cohere.coreml.export import ExportOptions, export_model

        model = tiny_model(tmp_path_factory, seed, eos_bias)
        out = (
            tmp_path_factory.getbasetemp()
            / "coreml-exports"
            / f"s{seed}-e{eos_bias:g}-{precision}-{len(_exports)}"
        )
        export_model(
            ExportOptions(
                model=str(model),
                out=out,
                precision=precision,
                buckets=buckets,
                cache_external=cache_external,
                keep_traced=True,
            )
        )
        _exports[key] = out
    return _exports[key]


def with_decoder(out: Path, decoder: str):
    """The layout of `out`, using `decoder` (a package file name) as its decoder."""
    import dataclasses

    from dictated.engines.cohere.coreml.models import find_layout
    from dictated.engines.cohere.coreml.signature import read_signature

    layout = find_layout(out)
    return dataclasses.replace(
        layout, decoder=out / decoder, decoder_signature=read_signature(out / decoder)
    )


def reference_gap(engine, pcm, tokens, step: int, a: int, b: int) -> float:
    """|score(a) - score(b)| that `engine`'s runtime gives at output `step` after its filters: how
    close to a tie the reference was where another runtime chose differently."""
    import numpy as np

    from dictated.engines.cohere.features import compute_features

    features = compute_features(pcm)
    session = engine.runtime.start(engine.runtime.encode(features.values, features.valid_frames))
    fed = engine.tokenizer.prompt("en") + list(tokens[:step])
    scores = np.array(session.feed(fed), dtype=np.float32)
    for f in engine.decoder.filters:
        f.apply(scores, fed)
    return abs(float(scores[a]) - float(scores[b]))


def first_divergence(want, got, eos_id: int) -> tuple[int, int, int]:
    """(step, reference's token, other's token) where two greedy outputs first differ; a sequence
    that ended earlier chose eos there."""
    step = next(
        (i for i, (a, b) in enumerate(zip(want.tokens, got.tokens, strict=False)) if a != b),
        min(len(want.tokens), len(got.tokens)),
    )

    def pick(tokens):
        return tokens[step] if step < len(tokens) else eos_id

    return step, pick(want.tokens), pick(got.tokens)

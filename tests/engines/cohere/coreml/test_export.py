"""`dictated models export` on tiny random Cohere Transcribe models, checked against the published
contract (names, shapes, dtypes, ranges) and against transformers (the traced modules that were
converted reproduce its encoder and decoder)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")
pytest.importorskip("transformers")

from dictated.engines.cohere.coreml import contract  # noqa: E402
from dictated.engines.cohere.coreml.export import ExportOptions, export_model, parse_buckets  # noqa: E402
from dictated.engines.cohere.coreml.models import sha256_file  # noqa: E402
from dictated.engines.cohere.coreml.signature import (  # noqa: E402
    decoder_flavour,
    read_signature,
    weight_precision,
)
from dictated.errors import ConfigError, ModelError  # noqa: E402
from tests.engines.cohere.coreml.exports import (  # noqa: E402
    BUCKETS,
    MAX_POSITIONS,
    TINY,
    tiny_export,
    tiny_model,
)
from tests.engines.cohere.fixtures import load_tiny_model  # noqa: E402

F16, F32, I32 = np.float16, np.float32, np.int32


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    return tiny_export(tmp_path_factory)


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    return tiny_export(tmp_path_factory, precision="int8")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_tiny_model(tiny_model(tmp_path_factory))


@pytest.fixture(scope="module")
def manifest(fp16):
    return json.loads((fp16 / "manifest.json").read_text())


def frames_after_subsampling(frames: int) -> int:
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames


def mil_program(package):
    """The converted program, read back from the saved package (works without macOS)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    return load(
        spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir
    )


def shape_and_type(t):
    return t.shape, t.dtype, t.ranges


# -- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_encoder_buckets_follow_the_contract(request, precision):
    out = request.getfixturevalue(precision)
    d_model = TINY["hidden_size"]
    for seconds in BUCKETS:
        frames = round(seconds * 100)
        sig = read_signature(out / f"cohere_encoder_{seconds:g}s.mlpackage")
        assert list(sig.inputs) == [contract.ENC_FEATURES, contract.ENC_FEATURE_LENGTH]
        assert shape_and_type(sig.inputs[contract.ENC_FEATURES]) == (
            (1, 128, frames),
            F32,
            (None,) * 3,
        )
        assert shape_and_type(sig.inputs[contract.ENC_FEATURE_LENGTH]) == ((1,), I32, (None,))
        assert list(sig.outputs) == [contract.ENC_HIDDEN]
        # d_model, not the encoder's own width: the encoder->decoder projection is inside
        hidden = sig.outputs[contract.ENC_HIDDEN]
        assert (hidden.shape, hidden.dtype) == ((1, frames_after_subsampling(frames), d_model), F16)
        assert not sig.states
        assert sig.metadata[contract.META_ROLE] == "encoder"
        assert sig.metadata[contract.META_BUCKET_S] == f"{seconds:g}"
        assert weight_precision(sig) == precision


def test_published_35s_arithmetic():
    assert frames_after_subsampling(3500) == 438 == contract.subsampled_frames(3500)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_stateful_decoder_follows_the_published_contract(request, model, precision):
    sig = read_signature(request.getfixturevalue(precision) / "cohere_decoder_stateful.mlpackage")
    layers, d_model = 2, TINY["hidden_size"]
    enc_max = frames_after_subsampling(round(max(BUCKETS) * 100))
    assert list(sig.inputs) == [
        "input_id",
        "encoder_hidden_states",
        "cross_attention_mask",
        "attention_mask",
        "position_ids",
    ]
    assert shape_and_type(sig.inputs["input_id"]) == ((1, 1), I32, (None, None))
    assert shape_and_type(sig.inputs["position_ids"]) == ((1, 1), I32, (None, None))
    hidden = sig.inputs["encoder_hidden_states"]
    assert (hidden.dtype, hidden.shape[0], hidden.shape[2]) == (F16, 1, d_model)
    assert hidden.ranges == (None, (1, enc_max), None)
    cross = sig.inputs["cross_attention_mask"]
    assert (cross.dtype, cross.shape[:3], cross.ranges) == (
        F16,
        (1, 1, 1),
        (None, None, None, (1, enc_max)),
    )
    mask = sig.inputs["attention_mask"]
    assert (mask.dtype, mask.shape[:3], mask.ranges) == (
        F16,
        (1, 1, 1),
        (None, None, None, (1, MAX_POSITIONS)),
    )
    assert list(sig.states) == [f"{kv}_cache_{i}" for i in range(layers) for kv in ("k", "v")]
    head_dim = d_model // 2
    for state in sig.states.values():
        assert (state.shape, state.dtype) == ((1, 2, MAX_POSITIONS, head_dim), F16)
    assert list(sig.outputs) == ["logits"]
    vocab = model.config.vocab_size
    assert (sig.outputs["logits"].shape, sig.outputs["logits"].dtype) == ((1, vocab), F32)
    assert decoder_flavour(sig) is contract.DecoderFlavour.STATEFUL
    assert sig.metadata[contract.META_SCORES] == "logits"
    # the caches are updated in place inside the program, not copied out
    assert {"read_state", "write_state"} <= sig.op_types
    assert weight_precision(sig) == precision


def test_cache_external_decoder_is_v2_with_fixed_shapes(fp16):
    sig = read_signature(fp16 / "cohere_decoder_cache_external_v2.mlpackage")
    caches = [f"k_cache_{i}" for i in range(2)] + [f"v_cache_{i}" for i in range(2)]
    assert list(sig.inputs) == [
        "input_id",
        "position_id",
        "encoder_hidden_states",
        "cross_attention_mask",
        "attention_mask",
        *caches,
    ]
    assert not any(t.flexible for t in sig.inputs.values())  # what lets it run on the Neural Engine
    assert sig.inputs["attention_mask"].shape == (1, 1, 1, MAX_POSITIONS)
    for name in caches:
        assert shape_and_type(sig.inputs[name]) == ((1, 2, MAX_POSITIONS, 32), F16, (None,) * 4)
        assert (sig.outputs[f"{name}_out"].shape, sig.outputs[f"{name}_out"].dtype) == (
            (1, 2, MAX_POSITIONS, 32),
            F16,
        )
    assert list(sig.outputs)[0] == "logits" and not sig.states
    assert decoder_flavour(sig) is contract.DecoderFlavour.CACHE_EXTERNAL_V2


def test_no_constant_overflows_fp16(fp16):
    """transformers masks with finfo(float32).min, which is -inf in fp16 and turns fully masked rows
    into NaN; the exported programs must only hold constants fp16 can represent."""
    for package in sorted(fp16.glob("*.mlpackage")):
        for op in mil_program(package).functions["main"].operations:
            value = getattr(op.val, "val", None) if op.op_type == "const" else None
            if (
                value is not None
                and np.issubdtype(np.asarray(value).dtype, np.floating)
                and np.size(value)
            ):
                assert np.all(np.abs(np.asarray(value, dtype=np.float64)) <= 65504), (
                    package.name,
                    op.name,
                )


def test_int8_quantises_weights_and_the_vocab_matrices_per_tensor(int8):
    quantized = {}
    for op in mil_program(int8 / "cohere_decoder_stateful.mlpackage").functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            quantized[op.name] = op.inputs["scale"].shape
    per_tensor = {name for name, scale in quantized.items() if int(np.prod(scale)) == 1}
    assert any("embed_tokens" in n for n in per_tensor) and any("proj_out" in n for n in per_tensor)
    assert any("fc1" in n for n in quantized.keys() - per_tensor)  # everything else per channel


def test_int8_packages_are_smaller(fp16, int8):
    def weights(out, name):
        return sum(p.stat().st_size for p in (out / name).rglob("weight.bin"))

    for name in ("cohere_encoder_5s.mlpackage", "cohere_decoder_stateful.mlpackage"):
        ratio = weights(int8, name) / weights(fp16, name)
        assert 0.4 < ratio < 0.7, (name, ratio)  # int8 halves fp16; biases and norms stay fp16


def test_manifest_records_every_file(fp16, manifest, tmp_path_factory):
    assert manifest["format"] == "dictated-coreml" and manifest["precision"] == "fp16"
    assert [e["seconds"] for e in manifest["encoders"]] == list(BUCKETS)
    assert [e["encoder_frames"] for e in manifest["encoders"]] == [
        frames_after_subsampling(round(s * 100)) for s in BUCKETS
    ]
    assert manifest["default_decoder"] == "cohere_decoder_stateful.mlpackage"
    assert {d["flavour"] for d in manifest["decoders"]} == {"stateful", "cache-external-v2"}
    assert all(d["max_positions"] == MAX_POSITIONS for d in manifest["decoders"])
    on_disk = {p.relative_to(fp16).as_posix() for p in fp16.rglob("*") if p.is_file()}
    on_disk -= {"manifest.json"} | {p for p in on_disk if p.startswith("traced/")}
    assert set(manifest["files"]) == on_disk
    for rel, record in manifest["files"].items():
        assert record["size"] == (fp16 / rel).stat().st_size
        assert record["sha256"] == sha256_file(fp16 / rel)
    source = tiny_model(tmp_path_factory)
    assert (fp16 / "tokenizer.model").read_bytes() == (source / "tokenizer.model").read_bytes()
    assert json.loads((fp16 / "vocab.json").read_text()) == json.loads(
        (source / "vocab.json").read_text()
    )


# -- the traced modules that were converted reproduce transformers ----------------------------


def traced(out, package):
    return torch.jit.load(str(out / "traced" / f"{package}.pt")).eval()


@pytest.mark.parametrize("valid", [200, 137, 64, 9])
def test_encoder_masks_like_transformers(fp16, model, valid):
    frames = 200
    encoder = traced(fp16, "cohere_encoder_2s")
    features = torch.randn(1, frames, 128, generator=torch.Generator().manual_seed(valid))
    features[:, valid:] = 0
    with torch.no_grad():
        mask = (torch.arange(frames) < valid)[None].long()
        ref = model.model.encoder(features, attention_mask=mask)
        expected = model.model.decoder.proj(ref.last_hidden_state)
        ours = encoder(
            features.transpose(1, 2).contiguous(), torch.tensor([valid], dtype=torch.int32)
        )
        unmasked = encoder(
            features.transpose(1, 2).contiguous(), torch.tensor([frames], dtype=torch.int32)
        )
    n_valid = int(ref.attention_mask.sum())
    assert torch.allclose(ours, expected, atol=1e-4)  # every frame, padded ones included
    if valid < frames:  # and the mask really matters
        assert (ours[:, :n_valid] - unmasked[:, :n_valid]).abs().max() > 1e-2


@pytest.mark.parametrize("package", ["cohere_decoder_stateful", "cohere_decoder_cache_external_v2"])
def test_decoder_steps_match_transformers(fp16, model, package):
    step = traced(fp16, package)
    frames, valid, d_model = 63, 40, model.config.encoder_config.hidden_size
    encoder_states = torch.randn(1, frames, d_model, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[13, 7, 4, 16, 60, 60, 5, 9, 11, 12, 99, 250, 3]])
    with torch.no_grad():
        hidden = model.model.decoder.proj(encoder_states)
        out = model.model.decoder(
            input_ids=tokens,
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=(torch.arange(frames) < valid)[None].long(),
        )
        expected = model.proj_out(out.last_hidden_state)[0]
        cross = torch.where(torch.arange(frames) < valid, 0.0, contract.MASK_NEGATIVE).view(
            1, 1, 1, frames
        )
        caches = [torch.zeros(1, 2, MAX_POSITIONS, 32, dtype=torch.float16) for _ in range(4)]
        for pos in range(tokens.shape[1]):
            tid, p = tokens[:, pos : pos + 1].int(), torch.tensor([[pos]], dtype=torch.int32)
            if package.endswith("stateful"):
                logits = step(tid, hidden, cross, torch.zeros(1, 1, 1, pos + 1), p)
            else:
                mask = torch.where(torch.arange(MAX_POSITIONS) <= pos, 0.0, contract.MASK_NEGATIVE)
                logits, *caches = step(tid, p, hidden, cross, mask.view(1, 1, 1, -1), *caches)
            # K/V are stored in fp16 (as CoreML states are): agreement to fp16 rounding
            assert torch.allclose(logits[0], expected[pos], atol=2e-3), pos


# -- options and errors ---------------------------------------------------------------------------


def test_parse_buckets():
    assert parse_buckets("35, 5,10,20,10") == (5.0, 10.0, 20.0, 35.0)
    for bad in ("5,x", "", "40", "0"):
        with pytest.raises(ConfigError, match="buckets"):
            parse_buckets(bad)


def test_export_refuses_a_non_empty_directory_and_bad_options(tmp_path, tmp_path_factory):
    model = str(tiny_model(tmp_path_factory))
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="already contains files; choose a new or empty"):
        export_model(ExportOptions(model=model, out=tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "user data"
    with pytest.raises(ConfigError, match="precision"):
        export_model(ExportOptions(model=model, out=tmp_path / "x", precision="int4"))
    with pytest.raises(ConfigError, match="flavour"):
        export_model(ExportOptions(model=model, out=tmp_path / "x", stateful=False))


@pytest.fixture
def restore_logging():
    """`cli.main` installs logging handlers on stderr (captured here); put the old ones back."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_export_and_force(tmp_path, tmp_path_factory, capsys, restore_logging):
    from dictated.cli import main

    model = str(tiny_model(tmp_path_factory))
    out = tmp_path / "cli-export"
    args = [
        "models",
        "export",
        "--model",
        model,
        "--out",
        str(out),
        "--buckets",
        "1,35",
        "--log-level",
        "warning",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "cohere_encoder_1s.mlpackage" in printed and "cohere_encoder_35s.mlpackage" in printed
    assert main(args) == 2  # ConfigError: already there
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--precision", "int8"]) == 0
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the Linux message")
def test_engine_refuses_linux_clearly(fp16):
    from dictated.engines.base import EngineOptions
    from dictated.engines.cohere.coreml.engine import CohereCoreMLEngine

    assert (
        CohereCoreMLEngine.unavailable_reason(EngineOptions(model=str(fp16)))
        == "CoreML needs macOS"
    )
    with pytest.raises(ConfigError, match="only on macOS; use cohere-torch or whisper"):
        CohereCoreMLEngine.load(EngineOptions(model=str(fp16)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5,10,20", "largest must be 35"),
        ("abc", "comma-separated"),
        ("0.1,35", "outside"),
        ("", "at least one"),
    ],
)
def test_bucket_lists_that_would_fail_at_run_time_are_refused(text, message):
    from dictated.engines.cohere.coreml.export.pipeline import parse_buckets

    with pytest.raises(ConfigError, match=message):
        parse_buckets(text)
    assert parse_buckets("35,10") == (10.0, 35.0)


def test_too_few_decoder_positions_are_refused(tmp_path):
    from dictated.engines.cohere.coreml.export.pipeline import ExportOptions

    with pytest.raises(ConfigError, match="max-positions: 10 leaves no room"):
        ExportOptions(model="m", out=tmp_path, max_positions=10)


def test_checkpoint_with_only_tokenizer_json_exports_the_same_vocabulary(
    tmp_path, tmp_path_factory
):
    """transformers' own save layout has tokenizer.json only; the export ships vocab.json built from
    it, identical to the one built from tokenizer.model, and checks it before converting anything."""
    import shutil

    import transformers

    from dictated.engines.cohere.coreml.export.pipeline import _copy_tokenizer

    model = tiny_model(tmp_path_factory)
    only_json = tmp_path / "json"
    shutil.copytree(model, only_json)
    transformers.TokenizersBackend.from_pretrained(model).save_pretrained(only_json)
    (only_json / "tokenizer.model").unlink()
    (only_json / "vocab.json").unlink()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _copy_tokenizer(only_json, tmp_path / "a") == ["vocab.json"]
    _copy_tokenizer(model, tmp_path / "b")
    assert json.loads((tmp_path / "a" / "vocab.json").read_text()) == json.loads(
        (tmp_path / "b" / "vocab.json").read_text()
    )
    nothing = tmp_path / "none"
    shutil.copytree(only_json, nothing)
    (nothing / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="no tokenizer"):
        _copy_tokenizer(nothing, tmp_path / "a")

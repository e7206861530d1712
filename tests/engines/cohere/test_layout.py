"""Cohere checkpoints in the layout users download: NeMo config keys, NeMo weight names, bf16.

The reference is transformers itself: it loads the tiny NeMo-layout checkpoint (with its native
keys) with nothing missing or unexpected, and its `generate` gives the tokens our cohere-torch
engine must give on the same checkpoint without the native keys (read from the NeMo ones).
"""

from __future__ import annotations

import copy
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402

from dictated.audio.format import int16_to_float32  # noqa: E402
from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from dictated.engines.cohere.layout import is_nemo_layout, native_config  # noqa: E402
from dictated.engines.cohere.runtime_torch import load_model  # noqa: E402
from dictated.errors import ModelError  # noqa: E402
from tests import speech  # noqa: E402
from tests.engines.cohere.fixtures import tiny_cohere_config, train_tiny_tokenizer  # noqa: E402
from tests.engines.cohere.nemo_checkpoint import make_nemo_cohere_dir, nemo_config  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")


@pytest.fixture(scope="module")
def both_keys(tmp_path_factory, tokenizer_model):
    """NeMo and native keys: what transformers (the reference) and vLLM both load."""
    return make_nemo_cohere_dir(tmp_path_factory.mktemp("both"), tokenizer_model=tokenizer_model)


@pytest.fixture(scope="module")
def nemo_only(tmp_path_factory, tokenizer_model):
    """The same weights with NeMo keys only, like the published checkpoint's config.json."""
    return make_nemo_cohere_dir(
        tmp_path_factory.mktemp("nemo"), tokenizer_model=tokenizer_model, native_keys=False
    )


def reference(model_dir):
    model, info = transformers.CohereAsrForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, output_loading_info=True
    )
    return model.eval(), info


def test_files_are_in_the_published_layout(nemo_only):
    names = {p.name for p in nemo_only.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"} <= names
    config = json.loads((nemo_only / "config.json").read_text())
    assert is_nemo_layout(config) and "encoder_config" not in config and "vocab_size" not in config
    with safe_open(nemo_only / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        dtypes = {f.get_tensor(k).dtype for k in keys if "num_batches_tracked" not in k}
    assert dtypes == {torch.bfloat16}
    assert not any(k.startswith(("model.", "proj_out")) for k in keys)
    for name in (
        "transf_decoder._decoder.layers.0.first_sub_layer.query_net.weight",
        "transf_decoder._decoder.layers.1.second_sub_layer.out_projection.bias",
        "transf_decoder._embedding.position_embedding.pos_enc",
        "encoder_decoder_proj.weight",
        "log_softmax.mlp.layer0.bias",
        "encoder.pre_encode.conv.0.weight",
        "encoder.layers.0.self_attn.linear_pos.weight",
        "encoder.layers.1.conv.batch_norm.running_var",
    ):
        assert name in keys


def test_transformers_loads_it_with_no_missing_or_unexpected_keys(both_keys):
    model, info = reference(both_keys)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert model.config.hidden_size == 64 and model.config.encoder_config.hidden_size == 48


def test_transformers_alone_cannot_read_the_nemo_keys(nemo_only, both_keys):
    """Why our loader reads them: without native keys transformers' config takes its defaults,
    the 2B model's sizes. (`from_pretrained` then builds and randomly initialises those 2B
    weights, 20-50 s and 8 GB on this machine, before it refuses the tiny checkpoint's tensors
    as mismatched sizes; the config is where it goes wrong, and it is what is checked here.)"""
    default = transformers.CohereAsrConfig()
    theirs = transformers.AutoConfig.from_pretrained(nemo_only)
    native = transformers.AutoConfig.from_pretrained(both_keys)

    def sizes(c) -> tuple[int, ...]:
        enc = c.encoder_config
        return (
            c.hidden_size,
            c.num_hidden_layers,
            enc.hidden_size,
            enc.num_hidden_layers,
            c.vocab_size,
        )

    assert sizes(native) == (64, 2, 48, 2, 384)  # the checkpoint's, read from native keys
    assert sizes(theirs) == sizes(default)  # NeMo keys alone: every size a default
    assert sizes(default)[:4] == (1024, 8, 1280, 48)  # the 2B model


def test_our_loader_reads_the_nemo_keys_and_names(nemo_only, both_keys):
    ours = load_model(nemo_only, torch.device("cpu"), torch.float32)
    theirs, _ = reference(both_keys)
    assert ours.config.hidden_size == 64 and ours.config.num_hidden_layers == 2
    assert ours.config.encoder_config.hidden_size == 48
    assert ours.config.max_position_embeddings == 128
    assert ours.config.vocab_size == theirs.config.vocab_size
    mine, reference_state = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference_state.keys()
    for name, tensor in reference_state.items():
        assert torch.equal(mine[name], tensor), name


def _generate(model, tokenizer, pcm, max_new_tokens):
    """transformers' own pipeline: its feature extractor (no dither) and `generate`."""
    extractor = transformers.CohereAsrFeatureExtractor(dither=0.0)
    inputs = extractor(pcm, sampling_rate=16000, return_tensors="pt")
    prompt = tokenizer.prompt("en")
    out = model.generate(
        input_features=inputs["input_features"],
        attention_mask=inputs["attention_mask"],
        decoder_input_ids=torch.tensor([prompt]),
        repetition_penalty=1.1,
        no_repeat_ngram_size=3,
        do_sample=False,
        max_new_tokens=max_new_tokens,
    )
    row = out[0, len(prompt) :].tolist()
    eos = model.config.eos_token_id
    return row[: row.index(eos)] if eos in row else row


@pytest.mark.parametrize("sentence", [0, 1])
def test_engine_tokens_equal_transformers_on_the_nemo_checkpoint(nemo_only, both_keys, sentence):
    engine = CohereTorchEngine.load(EngineOptions(model=str(nemo_only)))
    # this random model talks past the audio's token budget; parity here is about the layout
    engine.with_decoding(tokens_per_second=None)
    assert engine.tokenizer.eos_id == engine.tokenizer.piece_id("<|endoftext|>")
    pcm = int16_to_float32(speech.synthesize(speech.SENTENCES[sentence]))
    transcript = engine.transcribe(pcm, "en")
    model, _ = reference(both_keys)
    limit = model.config.max_position_embeddings - 10
    expected = _generate(model, engine.tokenizer, pcm, limit)
    assert list(transcript.tokens) == expected
    assert len(expected) > 5  # the comparison covers real decoding, not an immediate eos


# -- layout.native_config on its own ---------------------------------------------------------


@pytest.fixture(scope="module")
def raw_config():
    return nemo_config(tiny_cohere_config(384, 5, hidden_size=64, encoder_hidden_size=48))


def test_native_config_passes_a_transformers_config_through():
    raw = {"model_type": "cohere_asr", "hidden_size": 32}
    assert not is_nemo_layout(raw) and native_config(raw) == raw


def test_native_config_sizes_come_from_the_nemo_keys(raw_config):
    nemo = {k: v for k, v in raw_config.items() if k in ("encoder", "transf_decoder", "head")}
    native = native_config({**nemo, "model_type": "cohere_asr"})
    config = transformers.CohereAsrConfig.from_dict(native)
    assert (config.hidden_size, config.vocab_size, config.intermediate_size) == (64, 384, 128)
    assert config.encoder_config.hidden_size == 48
    assert config.encoder_config.intermediate_size == 96
    assert config.encoder_config.num_mel_bins == 128


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(hidden_size=128), "hidden_size is 128 but the NeMo keys give 64"),
        (
            lambda c: c["encoder_config"].update(num_hidden_layers=5),
            "encoder_config.num_hidden_layers is 5",
        ),
        (lambda c: c["encoder"].update(subsampling="striding"), "encoder.subsampling"),
        (lambda c: c["encoder"].update(self_attention_model="abs_pos"), "rel_pos"),
        (lambda c: c["encoder"].pop("d_model"), "encoder.d_model is missing"),
        (lambda c: c["head"].update(hidden_size=32), "head.hidden_size"),
        (lambda c: c["preprocessor"].update(window_stride=0.02), "window_stride gives 320"),
        (lambda c: c["preprocessor"].update(features=80), "features gives 80"),
        (lambda c: c["transf_decoder"].pop("config_dict"), "transf_decoder.config_dict"),
    ],
)
def test_native_config_names_what_is_wrong(raw_config, edit, message):
    raw = copy.deepcopy(raw_config)
    edit(raw)
    with pytest.raises(ModelError, match=message):
        native_config(raw, "x/config.json")


def test_engine_refuses_a_nemo_checkpoint_that_contradicts_itself(both_keys, tmp_path):
    for f in both_keys.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"config\.json contradicts itself: num_hidden_layers"):
        CohereTorchEngine.load(EngineOptions(model=str(tmp_path)))

"""A tiny Cohere Transcribe checkpoint in the layout users download (NeMo keys, NeMo names, bf16).

`make_nemo_cohere_dir` writes what CohereLabs/cohere-transcribe-03-2026 holds, at toy size:
- `config.json` with NeMo's keys (`encoder`, `transf_decoder.config_dict`, `head`,
  `preprocessor`, `sample_rate`, `max_audio_clip_s`, `overlap_chunk_second`), which vLLM and our
  loader read, and, unless `native_keys=False`, transformers' own keys from the same numbers
  (transformers ignores the NeMo ones and would otherwise build the 2B model);
- `model.safetensors` in bf16 with NeMo's tensor names: the inverse of transformers'
  `conversion_mapping.py` `cohere_asr` renames (`NATIVE_TO_NEMO` below; tests check that
  transformers maps every name back with nothing missing or unexpected);
- `tokenizer.model` (SentencePiece, byte fallback, every prompt piece) and `tokenizer_config.json`
  marking the control pieces special, which is all vLLM needs to build its tokenizer.

Sizes obey what vLLM's CPU build needs (DESIGN.md "Remote engine"): encoder and decoder widths
differ (vLLM creates `encoder_decoder_proj` only then; transformers always has it), encoder heads
equal decoder heads, decoder head size 32, no input scaling. The preprocessor asks for dither 0 and
no frame padding, so vLLM computes the features our engine does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.engines.cohere.fixtures import SPECIAL_PIECES, tiny_cohere_config, train_tiny_tokenizer

#: native (transformers) name -> NeMo name; applied in order to each key, first match wins per rule
NATIVE_TO_NEMO: tuple[tuple[str, str], ...] = (
    (r"^proj_out\.", "log_softmax.mlp.layer0."),
    (r"^model\.decoder\.proj\.", "encoder_decoder_proj."),
    (r"^model\.encoder\.subsampling\.layers\.", "encoder.pre_encode.conv."),
    (r"^model\.encoder\.subsampling\.linear\.", "encoder.pre_encode.out."),
    (r"\.self_attn\.relative_k_proj\.", ".self_attn.linear_pos."),
    (r"\.self_attn\.bias_u$", ".self_attn.pos_bias_u"),
    (r"\.self_attn\.bias_v$", ".self_attn.pos_bias_v"),
    (r"^(model\.encoder\..+)\.self_attn\.(q|k|v)_proj\.", r"\1.self_attn.linear_\2."),
    (r"^(model\.encoder\..+)\.self_attn\.o_proj\.", r"\1.self_attn.linear_out."),
    (r"\.conv\.norm\.", ".conv.batch_norm."),
    (r"^model\.encoder\.", "encoder."),
    (r"^model\.decoder\.pos_emb\.weight$", "transf_decoder._embedding.position_embedding.pos_enc"),
    (r"^model\.decoder\.embed_tokens\.", "transf_decoder._embedding.token_embedding."),
    (r"^model\.decoder\.embedding_layernorm\.", "transf_decoder._embedding.layer_norm."),
    (r"^model\.decoder\.norm\.", "transf_decoder._decoder.final_layer_norm."),
    (r"\.self_attn\.q_proj\.", ".first_sub_layer.query_net."),
    (r"\.self_attn\.k_proj\.", ".first_sub_layer.key_net."),
    (r"\.self_attn\.v_proj\.", ".first_sub_layer.value_net."),
    (r"\.self_attn\.o_proj\.", ".first_sub_layer.out_projection."),
    (r"\.encoder_attn\.q_proj\.", ".second_sub_layer.query_net."),
    (r"\.encoder_attn\.k_proj\.", ".second_sub_layer.key_net."),
    (r"\.encoder_attn\.v_proj\.", ".second_sub_layer.value_net."),
    (r"\.encoder_attn\.o_proj\.", ".second_sub_layer.out_projection."),
    (r"\.mlp\.fc1\.", ".third_sub_layer.dense_in."),
    (r"\.mlp\.fc2\.", ".third_sub_layer.dense_out."),
    (r"\.input_layernorm\.", ".layer_norm_1."),
    (r"\.post_attention_layernorm\.", ".layer_norm_2."),
    (r"\.final_layernorm\.", ".layer_norm_3."),
    (r"^model\.decoder\.layers\.", "transf_decoder._decoder.layers."),
)

#: vLLM-compatible toy sizes (see the module docstring)
SIZES = {
    "hidden_size": 64,  # decoder: 2 heads of 32
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "encoder_hidden_size": 48,  # != decoder width: a real encoder->decoder projection
    "encoder_layers": 2,
    "max_position_embeddings": 128,
}
MAX_AUDIO_CLIP_S = 35  # an int: vLLM sizes its dummy audio with it


def nemo_name(native: str) -> str:
    name = native
    for pattern, replacement in NATIVE_TO_NEMO:
        name = re.sub(pattern, replacement, name)
    return name


def nemo_config(config, *, native_keys: bool = True) -> dict:
    """config.json for `config` (a CohereAsrConfig): NeMo keys, plus transformers' when asked."""
    enc = config.encoder_config
    assert enc.num_attention_heads == config.num_attention_heads, "vLLM needs equal head counts"
    assert enc.hidden_size != config.hidden_size, "vLLM builds encoder_decoder_proj only then"
    nemo = {
        "model_type": "cohere_asr",
        "architectures": ["CohereAsrForConditionalGeneration"],
        "sample_rate": 16000,
        "max_audio_clip_s": MAX_AUDIO_CLIP_S,
        "overlap_chunk_second": 5,
        "preprocessor": {
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": enc.num_mel_bins,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 0.0,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "encoder": {
            "feat_in": enc.num_mel_bins,
            "feat_out": -1,
            "n_layers": enc.num_hidden_layers,
            "d_model": enc.hidden_size,
            "subsampling": "dw_striding",
            "subsampling_factor": enc.subsampling_factor,
            "subsampling_conv_channels": enc.subsampling_conv_channels,
            "causal_downsampling": False,
            "ff_expansion_factor": enc.intermediate_size // enc.hidden_size,
            "self_attention_model": "rel_pos",
            "n_heads": enc.num_attention_heads,
            "att_context_size": [-1, -1],
            "xscaling": bool(enc.scale_input),
            "untie_biases": True,
            "pos_emb_max_len": enc.max_position_embeddings,
            "conv_kernel_size": enc.conv_kernel_size,
            "conv_norm_type": "batch_norm",
            "conv_context_size": None,
        },
        "transf_decoder": {
            "config_dict": {
                "hidden_size": config.hidden_size,
                "inner_size": config.intermediate_size,
                "num_attention_heads": config.num_attention_heads,
                "num_layers": config.num_hidden_layers,
                "max_sequence_length": config.max_position_embeddings,
                "hidden_act": config.hidden_act,
            }
        },
        "head": {"num_classes": config.vocab_size, "hidden_size": config.hidden_size},
    }
    if not native_keys:
        return nemo
    native = config.to_dict()
    for key in ("transformers_version", "dtype", "torch_dtype"):
        native.pop(key, None)
    return {**native, **nemo}


def tokenizer_config(sp) -> dict:
    """What transformers/vLLM read next to tokenizer.model: special pieces marked special."""
    specials = {"<unk>", "<pad>", "<|endoftext|>", *SPECIAL_PIECES}
    added = {
        str(i): {
            "content": sp.id_to_piece(i),
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i in range(sp.get_piece_size())
        if sp.id_to_piece(i) in specials
    }
    return {
        "added_tokens_decoder": added,
        "bos_token": "<|startoftranscript|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }


def make_nemo_cohere_dir(
    path: Path,
    seed: int = 0,
    *,
    native_keys: bool = True,
    tokenizer_model: Path | None = None,
    eos_bias: float = 0.0,
    suppress_bytes: bool = False,
    **size_overrides,
) -> Path:
    """Build a seeded tiny Cohere Transcribe and save it in the NeMo layout into `path`.

    `native_keys=False` leaves transformers' keys out of config.json, as in the real checkpoint
    (transformers alone then builds the 2B sizes and fails; our loader reads the NeMo keys).
    `eos_bias` raises the LM head's bias at eos so the random model stops early.
    `suppress_bytes` lowers it at the byte-fallback pieces (`<0xHH>`) so the random model's text
    is valid UTF-8: random byte runs decode to U+FFFD differently in every detokeniser (vLLM's
    incremental one resets its stream on them), which would hide real differences in tokens.
    """
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file
    from transformers import CohereAsrForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sp_path = path / "tokenizer.model"
    if tokenizer_model is None:
        train_tiny_tokenizer(sp_path)
    else:
        sp_path.write_bytes(Path(tokenizer_model).read_bytes())
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    sizes = {**SIZES, **size_overrides}
    config = tiny_cohere_config(sp.get_piece_size(), sp.piece_to_id("▁"), **sizes)
    config.eos_token_id = sp.piece_to_id("<|endoftext|>")
    config.pad_token_id = sp.piece_to_id("<pad>")
    config.bos_token_id = sp.piece_to_id("<|startoftranscript|>")
    torch.manual_seed(seed)
    model = CohereAsrForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.proj_out.bias[config.eos_token_id] += eos_bias
        if suppress_bytes:
            byte_ids = [i for i in range(sp.get_piece_size()) if sp.is_byte(i)]
            model.proj_out.bias[byte_ids] -= 1000.0
    tensors = {
        nemo_name(name): (t.to(torch.bfloat16) if t.is_floating_point() else t).contiguous()
        for name, t in model.state_dict().items()
    }
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    config_json = nemo_config(config, native_keys=native_keys)
    (path / "config.json").write_text(json.dumps(config_json, indent=2), encoding="utf-8")
    generation = {
        "decoder_start_token_id": config.decoder_start_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
    }
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    (path / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(sp), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return path

"""Checkpoint layouts: the NeMo-style config.json users download, read into transformers' terms.

The Hugging Face checkpoint (CohereLabs/cohere-transcribe-03-2026) describes the model in NeMo's
words: `encoder.{d_model, n_layers, n_heads, ...}`, `transf_decoder.config_dict.{hidden_size,
num_layers, ...}`, `head.num_classes`, `preprocessor.{sample_rate, window_stride, ...}`, and names
its weights the NeMo way (`transf_decoder._decoder.*`, `encoder_decoder_proj.*`,
`log_softmax.mlp.layer0.*`). transformers loads it only because `CohereAsrConfig`'s defaults are
the real 2B sizes (it ignores the NeMo keys) and its `conversion_mapping.py` renames the weights.
So a smaller checkpoint in the same layout would be built at the wrong size. `native_config`
derives transformers' keys from the NeMo ones instead, refuses NeMo settings the transformers
architecture cannot represent, checks the preprocessor against our feature extractor, and
(where a config carries both key sets, as checkpoints made for transformers and vLLM at once do)
refuses them if they disagree. The weights' NeMo names are left to transformers' own renaming.

Torch-free: it reads JSON only, so `checkpoint_problem` and `doctor` can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...audio.format import SAMPLE_RATE
from ...errors import ModelError
from .features import HOP_LENGTH, N_FFT, N_MELS, WIN_LENGTH

#: NeMo encoder settings transformers' Parakeet encoder implements, and the only values it supports
_ENCODER_REQUIRED: dict[str, tuple[Any, ...]] = {
    "subsampling": ("dw_striding",),
    "self_attention_model": ("rel_pos",),
    "conv_norm_type": ("batch_norm",),
    "causal_downsampling": (False,),
    "untie_biases": (True,),
    "feat_out": (-1, None),
    "att_context_size": ([-1, -1], None),
}


def is_nemo_layout(raw: Mapping[str, Any]) -> bool:
    """Whether a config.json describes the model in NeMo's keys (the layout users download)."""
    return isinstance(raw.get("encoder"), Mapping) and isinstance(
        raw.get("transf_decoder"), Mapping
    )


def native_config(raw: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
    """The config as transformers' `CohereAsrConfig.from_dict` wants it, sizes from NeMo's keys.

    A config without NeMo keys is returned unchanged. `source` names the file in errors.
    """
    if not is_nemo_layout(raw):
        return dict(raw)
    encoder = _section(raw, "encoder", source)
    decoder = _section(
        _section(raw, "transf_decoder", source), "config_dict", source, "transf_decoder."
    )
    head = raw.get("head") or {}
    for key, allowed in _ENCODER_REQUIRED.items():
        if key in encoder and encoder[key] not in allowed:
            raise ModelError(
                f"{source}: encoder.{key} is {encoder[key]!r}; transformers' Cohere Transcribe "
                f"encoder supports only {' or '.join(repr(a) for a in allowed if a is not None)}"
            )
    d_model = _int(encoder, "d_model", source, "encoder.")
    channels = int(encoder.get("subsampling_conv_channels", -1))
    use_bias = bool(encoder.get("use_bias", True))
    encoder_native = {
        "hidden_size": d_model,
        "num_hidden_layers": _int(encoder, "n_layers", source, "encoder."),
        "num_attention_heads": _int(encoder, "n_heads", source, "encoder."),
        "intermediate_size": int(d_model * float(encoder.get("ff_expansion_factor", 4))),
        "num_mel_bins": int(encoder.get("feat_in", N_MELS)),
        "subsampling_factor": int(encoder.get("subsampling_factor", 8)),
        "subsampling_conv_channels": d_model if channels == -1 else channels,
        "conv_kernel_size": int(encoder.get("conv_kernel_size", 9)),
        "max_position_embeddings": int(encoder.get("pos_emb_max_len", 5000)),
        "scale_input": bool(encoder.get("xscaling", False)),
        "attention_bias": use_bias,
        "convolution_bias": use_bias,
    }
    hidden = _int(decoder, "hidden_size", source, "transf_decoder.config_dict.")
    native = {
        "hidden_size": hidden,
        "num_hidden_layers": _int(decoder, "num_layers", source, "transf_decoder.config_dict."),
        "num_attention_heads": _int(
            decoder, "num_attention_heads", source, "transf_decoder.config_dict."
        ),
        "intermediate_size": int(decoder.get("inner_size", 4 * hidden)),
        "max_position_embeddings": _int(
            decoder, "max_sequence_length", source, "transf_decoder.config_dict."
        ),
        "hidden_act": str(decoder.get("hidden_act", "relu")).removeprefix("torch.nn.").lower(),
    }
    if "num_classes" in head:
        native["vocab_size"] = int(head["num_classes"])
    if "hidden_size" in head and int(head["hidden_size"]) != hidden:
        raise ModelError(
            f"{source}: head.hidden_size {head['hidden_size']} differs from the decoder's "
            f"transf_decoder.config_dict.hidden_size {hidden}"
        )
    _check_preprocessor(raw, encoder_native["num_mel_bins"], source)
    _check_agreement(raw, native, encoder_native, source)
    given_encoder = raw.get("encoder_config") or {}
    return {
        **raw,
        **native,
        "encoder_config": {"model_type": "parakeet_encoder", **given_encoder, **encoder_native},
    }


def _check_preprocessor(raw: Mapping[str, Any], mel_bins: int, source: str) -> None:
    """Our feature extractor has fixed settings (features.py); a checkpoint must want the same."""
    pre = raw.get("preprocessor") or {}
    rate = int(pre.get("sample_rate", raw.get("sample_rate", SAMPLE_RATE)))
    expected = {
        "sample_rate": (rate, SAMPLE_RATE),
        "features": (int(pre.get("features", mel_bins)), N_MELS),
        "encoder.feat_in": (mel_bins, N_MELS),
        "window_size": (round(float(pre.get("window_size", 0.025)) * rate), WIN_LENGTH),
        "window_stride": (round(float(pre.get("window_stride", 0.01)) * rate), HOP_LENGTH),
        "n_fft": (int(pre.get("n_fft") or N_FFT), N_FFT),
    }
    wrong = [
        f"{k} gives {got} (we compute {want})" for k, (got, want) in expected.items() if got != want
    ]
    normalize = pre.get("normalize", "per_feature")
    if normalize != "per_feature":
        wrong.append(f"normalize is {normalize!r} (we compute per_feature)")
    if wrong:
        raise ModelError(
            f"{source}: the preprocessor differs from Cohere Transcribe's features: {'; '.join(wrong)}"
        )


def _check_agreement(
    raw: Mapping[str, Any], native: dict[str, Any], encoder: dict[str, Any], source: str
) -> None:
    given_encoder = raw.get("encoder_config") or {}
    wrong = [
        f"{key} is {raw[key]} but the NeMo keys give {value}"
        for key, value in native.items()
        if key in raw and raw[key] != value
    ]
    wrong += [
        f"encoder_config.{key} is {given_encoder[key]} but the NeMo keys give {value}"
        for key, value in encoder.items()
        if key in given_encoder and given_encoder[key] != value
    ]
    if wrong:
        raise ModelError(f"{source} contradicts itself: {'; '.join(wrong)}")


def _section(raw: Mapping[str, Any], key: str, source: str, prefix: str = "") -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise ModelError(f"{source}: {prefix}{key} is missing or not an object")
    return value


def _int(section: Mapping[str, Any], key: str, source: str, prefix: str) -> int:
    try:
        return int(section[key])
    except KeyError:
        raise ModelError(f"{source}: {prefix}{key} is missing") from None
    except (TypeError, ValueError):
        raise ModelError(f"{source}: {prefix}{key} is {section[key]!r}, not a number") from None

"""PyTorch runtime over transformers' own `CohereAsrForConditionalGeneration` and its KV cache.

transformers applies the encoder->decoder projection (`model.decoder.proj`, 1280 -> 1024) at the
top of every decoder forward, i.e. once per generated token. We apply it once per utterance in
`encode` and swap the decoder's copy for an identity, so the decoder's own forward (masks, position
embeddings, `EncoderDecoderCache` with cross-attention K/V computed on the first call) runs
unchanged on already-projected states. Tests check the tokens equal `generate`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import CohereAsrConfig, CohereAsrForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.utils import logging as hf_logging

from ...errors import ConfigError, ModelError
from .features import MAX_FRAMES
from .layout import is_nemo_layout, native_config
from .runtime import CohereRuntime, DecoderSession, EncoderOutput

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": (torch.float32, "fp32"),
    "fp32": (torch.float32, "fp32"),
    "float16": (torch.float16, "fp16"),
    "fp16": (torch.float16, "fp16"),
    "bfloat16": (torch.bfloat16, "bf16"),
    "bf16": (torch.bfloat16, "bf16"),
}


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda, then mps, then cpu; an explicit device must be usable (ConfigError if not)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: cuda requested but PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "device: mps requested but PyTorch's Metal backend is not available on this machine"
        )
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: {device!r} is not one of auto, cpu, cuda, mps")
    return torch.device(device)


def resolve_dtype(compute_type: str | None, device: torch.device) -> tuple[torch.dtype, str]:
    """(torch dtype, precision name). Default: fp32 on cpu, bf16/fp16 on GPUs; half precision on cpu is refused."""
    if compute_type is None:
        if device.type == "cuda":
            return (
                (torch.bfloat16, "bf16")
                if torch.cuda.is_bf16_supported()
                else (torch.float16, "fp16")
            )
        return (torch.float16, "fp16") if device.type == "mps" else (torch.float32, "fp32")
    if compute_type not in _DTYPES:
        raise ConfigError(
            f"compute_type: {compute_type!r} is not one of float32, float16, bfloat16 for cohere-torch"
        )
    dtype, name = _DTYPES[compute_type]
    if device.type == "cpu" and dtype != torch.float32:
        raise ConfigError(
            f"compute_type: {compute_type} needs a GPU (cuda or mps); use float32 on cpu"
        )
    return dtype, name


def load_model(
    model_dir: Path, device: torch.device, dtype: torch.dtype
) -> CohereAsrForConditionalGeneration:
    """Load a checkpoint directory in either layout; ModelError naming the directory or file on failure.

    The NeMo layout users download (layout.py) is built at the sizes its NeMo keys give, not at
    `CohereAsrConfig`'s defaults; transformers' conversion mapping renames its weights and casts
    its bf16 tensors to `dtype`.
    """
    config_path = model_dir / "config.json"
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
        model_type = raw.get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"cannot read {config_path}: {exc}") from exc
    if model_type != "cohere_asr":
        raise ModelError(
            f"{config_path} describes a {model_type!r} model, not cohere_asr (Cohere Transcribe)"
        )
    config = None
    if is_nemo_layout(raw):
        log.info("%s is in the NeMo layout: sizes from its NeMo keys", config_path)
        config = CohereAsrConfig.from_dict(native_config(raw, str(config_path)))
    hf_logging.disable_progress_bar()  # a daemon's stderr is a log, not a terminal
    try:
        model = CohereAsrForConditionalGeneration.from_pretrained(
            model_dir, config=config, dtype=dtype
        )
    except Exception as exc:  # transformers and safetensors raise many types for bad files
        raise ModelError(f"cannot load the Cohere Transcribe model in {model_dir}: {exc}") from exc
    return model.to(device).eval()


class TorchRuntime(CohereRuntime):
    """Encoder + decoder on one torch device; `feed` returns raw logits (not log-probs)."""

    scores_are_log_probs = False

    def __init__(self, model: CohereAsrForConditionalGeneration, precision: str = "fp32"):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.decoder_precision = precision
        self.max_positions = int(model.config.max_position_embeddings)
        decoder = model.model.decoder
        if isinstance(decoder.proj, torch.nn.Identity):
            raise ValueError(
                "this model's projection was already moved out by another TorchRuntime"
            )
        self.proj = decoder.proj
        decoder.proj = torch.nn.Identity()  # applied once per utterance in encode()

    @classmethod
    def from_pretrained(
        cls, model_dir: Path, device: str = "auto", compute_type: str | None = None
    ) -> TorchRuntime:
        torch_device = resolve_device(device)
        dtype, precision = resolve_dtype(compute_type, torch_device)
        log.info("loading Cohere Transcribe from %s on %s (%s)", model_dir, torch_device, precision)
        return cls(load_model(Path(model_dir), torch_device, dtype), precision)

    def max_feature_frames(self) -> int:
        return MAX_FRAMES + 1  # 35 s gives 3501 frames, the last one never valid

    def encode_cost(self, valid_frames: int) -> float:
        """On a CPU the decoder steps of a 2B model cost as much as the encoder: never cheap."""
        if self.device.type == "cpu":
            return 1.0
        return super().encode_cost(valid_frames)

    @torch.inference_mode()
    def encode(self, features: np.ndarray, valid_frames: int) -> EncoderOutput:
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None]
        mask = torch.zeros(1, x.shape[1], dtype=torch.long)
        mask[:, :valid_frames] = 1
        out = self.model.model.encoder(
            x.to(self.device, self.dtype), attention_mask=mask.to(self.device)
        )
        hidden = self.proj(out.last_hidden_state)
        valid = int(out.attention_mask.sum()) if out.attention_mask is not None else hidden.shape[1]
        return EncoderOutput(hidden=hidden, valid_frames=valid, total_frames=int(hidden.shape[1]))

    def start(self, encoded: EncoderOutput) -> TorchDecoderSession:
        return TorchDecoderSession(self, encoded)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TorchDecoderSession(DecoderSession):
    def __init__(self, runtime: TorchRuntime, encoded: EncoderOutput):
        self.runtime = runtime
        self.hidden = encoded.hidden
        mask = torch.arange(encoded.total_frames, device=runtime.device) < encoded.valid_frames
        self.encoder_mask = mask[None].long()
        config = runtime.model.config
        self.cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        self.position = 0

    @torch.inference_mode()
    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        if self.position + len(token_ids) > self.runtime.max_positions:
            raise ValueError(f"decoder positions exhausted ({self.runtime.max_positions})")
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.runtime.device)
        out = self.runtime.model.model.decoder(
            input_ids=ids,
            encoder_hidden_states=self.hidden,
            encoder_attention_mask=self.encoder_mask,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.position += len(token_ids)
        logits = self.runtime.model.proj_out(out.last_hidden_state)[0, -1]
        return logits.float().cpu().numpy()

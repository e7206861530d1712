"""PyTorch runtime over transformers' own `CohereAsrForConditionalGeneration` modules.

The precision follows the hardware (`precision.py`: bf16 where the CPU or GPU computes it natively,
fp32 elsewhere, int8 dynamic quantisation on request); the decoder steps through
`decoder_torch.StaticDecoder` (static KV buffer, cross-attention K/V once per utterance).

transformers applies the encoder->decoder projection (`model.decoder.proj`, 1280 -> 1024) at the
top of every decoder forward, i.e. once per generated token. We apply it once per utterance in
`encode` and swap the decoder's copy for an identity, so the decoder's own forward (masks, position
embeddings, `EncoderDecoderCache` with cross-attention K/V computed on the first call) runs
unchanged on already-projected states; it stays available as `decoder="transformers"`, the
reference loop. Tests check both loops' tokens equal `generate`'s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import CohereAsrConfig, CohereAsrForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.utils import logging as hf_logging

from ...errors import ConfigError, ModelError
from .decoder_torch import StaticDecoder, StaticDecoderSession
from .features import MAX_FRAMES
from .layout import is_nemo_layout, native_config
from .precision import Precision, resolve_precision
from .quantize_torch import quantize_int8
from .runtime import CohereRuntime, DecoderSession, EncoderOutput

log = logging.getLogger(__name__)


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
    """Encoder + decoder on one torch device; `feed` returns raw logits (not log-probs).

    `decoder="static"` (the default) steps with `decoder_torch.StaticDecoder` (static KV buffer,
    cross K/V once per utterance); `"transformers"` keeps transformers' own decoder forward and
    `EncoderDecoderCache`, the reference the static loop is measured against.
    """

    scores_are_log_probs = False

    def __init__(
        self,
        model: CohereAsrForConditionalGeneration,
        precision: str = "fp32",
        decoder: str = "static",
    ):
        if decoder not in ("static", "transformers"):
            raise ValueError(f"decoder must be 'static' or 'transformers', not {decoder!r}")
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.decoder_precision = precision
        self.max_positions = int(model.config.max_position_embeddings)
        transformers_decoder = model.model.decoder
        if isinstance(transformers_decoder.proj, torch.nn.Identity):
            raise ValueError(
                "this model's projection was already moved out by another TorchRuntime"
            )
        self.proj = transformers_decoder.proj
        transformers_decoder.proj = torch.nn.Identity()  # applied once per utterance in encode()
        self.decoder_kind = decoder
        self.static = StaticDecoder(model, self.max_positions) if decoder == "static" else None

    @classmethod
    def from_pretrained(
        cls,
        model_dir: Path,
        device: str = "auto",
        compute_type: str | None = None,
        decoder: str = "static",
    ) -> TorchRuntime:
        torch_device = resolve_device(device)
        precision = resolve_precision(compute_type, torch_device.type)
        log.info(
            "loading Cohere Transcribe from %s on %s (%s)", model_dir, torch_device, precision.name
        )
        model = load_model(Path(model_dir), torch_device, precision.dtype)
        return cls.from_model(model, precision, decoder)

    @classmethod
    def from_model(
        cls,
        model: CohereAsrForConditionalGeneration,
        precision: Precision,
        decoder: str = "static",
    ) -> TorchRuntime:
        """Wrap a loaded model; int8 quantises its linear layers here (in place)."""
        if precision.quantize:
            # about a minute for the 2B model on 2 cores, at every start (not cached): say so, as
            # the daemon's status shows only `warming` meanwhile
            log.info("quantising the model's linear layers to int8 (about a minute at full size)")
            began = time.perf_counter()
            quantize_int8(model)
            log.info("quantised to int8 in %.1f s", time.perf_counter() - began)
        return cls(model, precision.name, decoder)

    def max_feature_frames(self) -> int:
        return MAX_FRAMES + 1  # 35 s gives 3501 frames, the last one never valid

    def encode_cost(self, valid_frames: int) -> float:
        """On a CPU the decoder steps of a 2B model cost as much as the encoder: never cheap."""
        if self.device.type == "cpu":
            return 1.0
        return super().encode_cost(valid_frames)

    @torch.inference_mode()
    def encode(self, features: np.ndarray, valid_frames: int) -> EncoderOutput:
        """Encode exactly the frames given (the audio's length, never padded to 35 s)."""
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None]
        mask = torch.zeros(1, x.shape[1], dtype=torch.long)
        mask[:, :valid_frames] = 1
        out = self.model.model.encoder(
            x.to(self.device, self.dtype), attention_mask=mask.to(self.device)
        )
        hidden = self.proj(out.last_hidden_state)
        valid = int(out.attention_mask.sum()) if out.attention_mask is not None else hidden.shape[1]
        return EncoderOutput(hidden=hidden, valid_frames=valid, total_frames=int(hidden.shape[1]))

    def start(self, encoded: EncoderOutput) -> DecoderSession:
        if self.static is not None:
            return StaticDecoderSession(self.static, encoded)
        return TorchDecoderSession(self, encoded)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self.static = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TorchDecoderSession(DecoderSession):
    """transformers' own decoder forward with its `EncoderDecoderCache` (the reference loop)."""

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
            past_key_values=self.cache,  # `cache` from transformers 5.40; both work until then
            use_cache=True,
        )
        self.position += len(token_ids)
        logits = self.runtime.model.proj_out(out.last_hidden_state)[0, -1]
        return logits.float().cpu().numpy()

"""The Cohere Transcribe encoder as a traceable module with working feature-length masking.

transformers' `ParakeetEncoder` masks padded frames with `finfo(float32).min`, which becomes -inf in
fp16 and turns fully masked rows into NaN that then leaks into valid frames. This wrapper runs the
same submodules (same weights, same maths) but masks with a finite value *replacing* the scores,
which reproduces transformers exactly: valid query frames never see padded keys, padded query
frames get the same uniform attention transformers gives them, and the convolution module zeroes
padded frames before its depthwise convolution. The encoder->decoder projection
(`model.decoder.proj`) is applied here, once per utterance, so no decoder applies it again.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import contract


class EncoderForExport(nn.Module):
    """input_features (1, n_mels, F) float32, feature_length (1,) int32 -> hidden_states (1, E, d)."""

    def __init__(self, model: nn.Module, feature_frames: int):
        super().__init__()
        encoder = model.model.encoder
        cfg = encoder.config
        self.subsampling = encoder.subsampling
        self.encode_positions = encoder.encode_positions
        self.layers = encoder.layers
        self.proj = model.model.decoder.proj
        self.input_scale = float(encoder.input_scale)
        self.num_heads = int(cfg.num_attention_heads)
        self.sub_layers = int(math.log2(cfg.subsampling_factor))
        self.sub_kernel = int(cfg.subsampling_conv_kernel_size)
        self.sub_stride = int(cfg.subsampling_conv_stride)
        # Sizes are Python ints fixed per bucket: coremltools cannot convert reshapes whose sizes
        # were traced from tensor shapes (aten::Int of a size), and a bucket's shapes never vary.
        self.feature_frames = int(feature_frames)
        with torch.no_grad():
            probe = self.subsampling(torch.zeros(1, feature_frames, int(cfg.num_mel_bins)))
        self.encoder_frames = int(probe.shape[1])

    def forward(self, input_features: torch.Tensor, feature_length: torch.Tensor) -> torch.Tensor:
        features = input_features.transpose(1, 2)  # (1, F, n_mels), transformers' layout
        frame_mask = (
            torch.arange(self.feature_frames, dtype=torch.int32)[None, :]
            < feature_length.to(torch.int32)[:, None]
        )
        hidden = self.subsampling(features, frame_mask.to(torch.int32))
        hidden = hidden * self.input_scale
        positions = self.encode_positions(hidden)

        valid = (
            torch.arange(self.encoder_frames, dtype=torch.float32)[None, :]
            < self._subsampled(feature_length)[:, None]
        )
        pair_mask = (valid[:, None, :] & valid[:, :, None])[:, None]  # (1, 1, E, E)
        valid_frames = valid.to(hidden.dtype)[:, :, None]  # (1, E, 1)
        for block in self.layers:
            hidden = self._block(block, hidden, positions, pair_mask, valid_frames)
        return self.proj(hidden)

    def _subsampled(self, feature_length: torch.Tensor) -> torch.Tensor:
        """Valid encoder frames, as transformers' `_get_subsampling_output_length` computes them."""
        add_pad = (self.sub_kernel - 1) // 2 * 2 - self.sub_kernel
        lengths = feature_length.to(torch.float32)
        for _ in range(self.sub_layers):
            lengths = torch.floor((lengths + add_pad) / self.sub_stride + 1.0)
        return lengths

    def _block(self, block, hidden, positions, pair_mask, valid_frames):
        hidden = hidden + 0.5 * block.feed_forward1(block.norm_feed_forward1(hidden))
        hidden = hidden + self._attention(
            block.self_attn, block.norm_self_att(hidden), positions, pair_mask
        )
        hidden = hidden + self._convolution(block.conv, block.norm_conv(hidden), valid_frames)
        hidden = hidden + 0.5 * block.feed_forward2(block.norm_feed_forward2(hidden))
        return block.norm_out(hidden)

    def _attention(self, attn, hidden, positions, pair_mask):
        """Relative-position self-attention (Transformer-XL terms a-d) of `ParakeetEncoderAttention`."""
        length, heads, head_dim = self.encoder_frames, self.num_heads, attn.head_dim
        query = attn.q_proj(hidden).view(1, length, heads, head_dim).transpose(1, 2)
        key = attn.k_proj(hidden).view(1, length, heads, head_dim).transpose(1, 2)
        value = attn.v_proj(hidden).view(1, length, heads, head_dim).transpose(1, 2)
        query_u = query + attn.bias_u.view(1, heads, 1, head_dim)
        query_v = query + attn.bias_v.view(1, heads, 1, head_dim)
        rel_key = attn.relative_k_proj(positions).view(1, 2 * length - 1, heads, head_dim)
        scores_bd = self._rel_shift(query_v @ rel_key.permute(0, 2, 3, 1))[..., :length]
        scores = (query_u @ key.transpose(2, 3) + scores_bd) * attn.scaling
        # replace (not add): fully masked rows become uniform, exactly like transformers' finfo.min
        scores = scores.masked_fill(~pair_mask, contract.MASK_NEGATIVE)
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ value).transpose(1, 2).reshape(1, length, heads * head_dim)
        return attn.o_proj(out)

    def _rel_shift(self, scores: torch.Tensor) -> torch.Tensor:
        """`ParakeetEncoderAttention._rel_shift` with static sizes (Transformer-XL appendix B)."""
        heads, length = self.num_heads, self.encoder_frames
        positions = 2 * length - 1
        scores = nn.functional.pad(scores, pad=(1, 0))
        scores = scores.reshape(1, heads, positions + 1, length)
        return scores[:, :, 1:].reshape(1, heads, length, positions)

    @staticmethod
    def _convolution(conv, hidden, valid_frames):
        """`ParakeetEncoderConvolutionModule` with the padding mask as a multiply."""
        hidden = conv.pointwise_conv1(hidden.transpose(1, 2))
        hidden = nn.functional.glu(hidden, dim=1)
        hidden = hidden * valid_frames.transpose(1, 2)
        hidden = conv.depthwise_conv(hidden)
        hidden = conv.activation(conv.norm(hidden))
        return conv.pointwise_conv2(hidden).transpose(1, 2)


def trace_encoder(model: nn.Module, feature_frames: int) -> torch.jit.ScriptModule:
    """Trace the encoder for a fixed bucket of `feature_frames` frames."""
    wrapper = EncoderForExport(model, feature_frames).eval().requires_grad_(False)
    n_mels = int(model.config.encoder_config.num_mel_bins)
    features = torch.zeros(1, n_mels, feature_frames)
    length = torch.tensor([feature_frames], dtype=torch.int32)
    with torch.no_grad():
        return torch.jit.trace(wrapper, (features, length), check_trace=False)


def convert_encoder(
    traced: torch.jit.ScriptModule, *, n_mels: int, feature_frames: int, fp16: bool
):
    """Convert a traced encoder bucket to an ML program (macOS 15 target, like the decoder)."""
    import coremltools as ct
    import numpy as np

    return ct.convert(
        traced,
        inputs=[
            ct.TensorType(
                name=contract.ENC_FEATURES, shape=(1, n_mels, feature_frames), dtype=np.float32
            ),
            ct.TensorType(name=contract.ENC_FEATURE_LENGTH, shape=(1,), dtype=np.int32),
        ],
        outputs=[ct.TensorType(name=contract.ENC_HIDDEN, dtype=np.float16 if fp16 else np.float32)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS15,
        skip_model_load=True,
    )

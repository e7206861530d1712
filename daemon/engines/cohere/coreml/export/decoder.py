"""One-token decoder steps over transformers' Cohere decoder modules, in the published contract.

transformers keeps the self-attention KV cache in Python `Cache` objects, which cannot be traced
into CoreML. These wrappers run the very same submodules (embeddings, layer norms, attention
projections, MLPs, LM head) for one token and keep K/V either in registered fp16 buffers that
CoreML turns into states (`StatefulDecoderStep`, State API, macOS 15) or in explicit cache inputs
and outputs (`CacheExternalDecoderStep`, the FluidAudio "v2" flavour with a fixed additive causal
mask). Both output raw logits in float32 (the published stateful decoder outputs log-softmax; ours
say `dictated.scores = logits` in their metadata so the runtime applies transformers' repetition
penalty to the same numbers transformers does).

Cross-attention keys/values are recomputed from `encoder_hidden_states` at every step, as in the
published packages; `encoder_hidden_states` already includes the encoder->decoder projection.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import contract


class _DecoderCore(nn.Module):
    """Shared maths of one decoder step; subclasses decide where K/V live."""

    def __init__(self, model: nn.Module, max_positions: int):
        super().__init__()
        cfg = model.config
        decoder = model.model.decoder
        if max_positions > cfg.max_position_embeddings:
            raise ValueError(
                f"max_positions {max_positions} exceeds the model's {cfg.max_position_embeddings} position embeddings"
            )
        self.embed_tokens = decoder.embed_tokens
        self.pos_emb = decoder.pos_emb
        self.embedding_layernorm = decoder.embedding_layernorm
        self.layers = decoder.layers
        self.norm = decoder.norm
        self.proj_out = model.proj_out
        self.num_layers = int(cfg.num_hidden_layers)
        self.num_heads = int(cfg.num_attention_heads)
        self.num_kv_heads = int(cfg.num_key_value_heads)
        self.head_dim = int(cfg.head_dim)
        self.max_positions = int(max_positions)

    def cache_shape(self) -> tuple[int, int, int, int]:
        return (1, self.num_kv_heads, self.max_positions, self.head_dim)

    def _embed(self, input_id: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        hidden = self.embed_tokens(input_id.to(torch.long)) + self.pos_emb(position.to(torch.long))
        return self.embedding_layernorm(hidden)  # (1, 1, d)

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.view(1, -1, heads, self.head_dim).transpose(1, 2)

    def _attend(self, query, keys, values, mask, attn) -> torch.Tensor:
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:
            keys = keys.repeat_interleave(groups, dim=1)
            values = values.repeat_interleave(groups, dim=1)
        scores = query @ keys.transpose(2, 3) * attn.scaling + mask
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ values).transpose(1, 2).reshape(1, 1, self.num_heads * self.head_dim)
        return attn.o_proj(out)

    def _layer(self, i, hidden, encoder_hidden_states, cross_attention_mask, self_kv):
        """One decoder layer; `self_kv(layer, k, v)` stores this token's K/V and returns all keys,
        values and the self-attention mask to attend with."""
        layer = self.layers[i]
        attn = layer.self_attn
        normed = layer.input_layernorm(hidden)
        query = self._heads(attn.q_proj(normed), self.num_heads)
        keys, values, mask = self_kv(
            i,
            self._heads(attn.k_proj(normed), self.num_kv_heads),
            self._heads(attn.v_proj(normed), self.num_kv_heads),
        )
        hidden = hidden + self._attend(query, keys, values, mask, attn)

        cross = layer.encoder_attn
        normed = layer.post_attention_layernorm(hidden)
        query = self._heads(cross.q_proj(normed), self.num_heads)
        keys = self._heads(cross.k_proj(encoder_hidden_states), self.num_kv_heads)
        values = self._heads(cross.v_proj(encoder_hidden_states), self.num_kv_heads)
        hidden = hidden + self._attend(query, keys, values, cross_attention_mask, cross)

        return hidden + layer.mlp(layer.final_layernorm(hidden))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.norm(hidden))[:, 0, :].to(torch.float32)  # (1, vocab)


class StatefulDecoderStep(_DecoderCore):
    """Inputs input_id, encoder_hidden_states, cross_attention_mask, attention_mask (1,1,1,step+1),
    position_ids; states k_cache_i / v_cache_i (fp16 buffers); output logits.

    The step's position is `attention_mask`'s length minus one: its K/V are written there in place.
    """

    def __init__(self, model: nn.Module, max_positions: int):
        super().__init__(model, max_positions)
        for i in range(self.num_layers):
            self.register_buffer(
                contract.k_cache(i), torch.zeros(self.cache_shape(), dtype=torch.float16)
            )
            self.register_buffer(
                contract.v_cache(i), torch.zeros(self.cache_shape(), dtype=torch.float16)
            )

    def forward(
        self, input_id, encoder_hidden_states, cross_attention_mask, attention_mask, position_ids
    ):
        end = attention_mask.shape[-1]

        def self_kv(i, key, value):
            k_cache = getattr(self, contract.k_cache(i))
            v_cache = getattr(self, contract.v_cache(i))
            k_cache[:, :, end - 1 : end, :] = key.to(torch.float16)
            v_cache[:, :, end - 1 : end, :] = value.to(torch.float16)
            keys = k_cache[:, :, :end, :].to(key.dtype)
            values = v_cache[:, :, :end, :].to(value.dtype)
            return keys, values, attention_mask.to(key.dtype)

        hidden = self._embed(input_id, position_ids)
        cross_mask = cross_attention_mask.to(hidden.dtype)
        encoder_hidden_states = encoder_hidden_states.to(hidden.dtype)
        for i in range(self.num_layers):
            hidden = self._layer(i, hidden, encoder_hidden_states, cross_mask, self_kv)
        return self._logits(hidden)


class CacheExternalDecoderStep(_DecoderCore):
    """The "v2" cache-external flavour: inputs input_id, position_id, encoder_hidden_states,
    cross_attention_mask, attention_mask (1,1,1,S) additive causal, k_cache_i..., v_cache_i...;
    outputs logits, k_cache_i_out..., v_cache_i_out... (this step's K/V written at position_id).

    The write is a one-hot blend rather than an indexed update so every shape stays fixed, which is
    what lets this flavour run on the Neural Engine.
    """

    def forward(
        self,
        input_id,
        position_id,
        encoder_hidden_states,
        cross_attention_mask,
        attention_mask,
        *caches,
    ):
        n = self.num_layers
        k_caches, v_caches = caches[:n], caches[n:]
        slots = torch.arange(self.max_positions, dtype=torch.int32)
        onehot = (slots == position_id.to(torch.int32).view(1)).view(1, 1, self.max_positions, 1)
        new_k: list[torch.Tensor] = []
        new_v: list[torch.Tensor] = []

        def self_kv(i, key, value):
            hot = onehot.to(key.dtype)
            keys = k_caches[i].to(key.dtype) * (1.0 - hot) + key * hot
            values = v_caches[i].to(value.dtype) * (1.0 - hot) + value * hot
            new_k.append(keys.to(torch.float16))
            new_v.append(values.to(torch.float16))
            return keys, values, attention_mask.to(key.dtype)

        hidden = self._embed(input_id, position_id)
        cross_mask = cross_attention_mask.to(hidden.dtype)
        encoder_hidden_states = encoder_hidden_states.to(hidden.dtype)
        for i in range(n):
            hidden = self._layer(i, hidden, encoder_hidden_states, cross_mask, self_kv)
        return (self._logits(hidden), *new_k, *new_v)


def _example_encoder(model: nn.Module, encoder_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    d_model = int(model.config.hidden_size)
    return torch.zeros(1, encoder_frames, d_model), torch.zeros(1, 1, 1, encoder_frames)


def trace_stateful(
    model: nn.Module, max_positions: int, encoder_frames: int
) -> torch.jit.ScriptModule:
    step = StatefulDecoderStep(model, max_positions).eval().requires_grad_(False)
    hidden, cross = _example_encoder(model, encoder_frames)
    example = (
        torch.zeros(1, 1, dtype=torch.int32),
        hidden,
        cross,
        torch.zeros(1, 1, 1, 3),
        torch.full((1, 1), 2, dtype=torch.int32),
    )
    with torch.no_grad():
        traced = torch.jit.trace(step, example, check_trace=False)
    for i in range(step.num_layers):  # tracing ran one step; states start empty
        getattr(traced, contract.k_cache(i)).zero_()
        getattr(traced, contract.v_cache(i)).zero_()
    return traced


def trace_cache_external(
    model: nn.Module, max_positions: int, encoder_frames: int
) -> torch.jit.ScriptModule:
    step = CacheExternalDecoderStep(model, max_positions).eval().requires_grad_(False)
    hidden, cross = _example_encoder(model, encoder_frames)
    caches = tuple(
        torch.zeros(step.cache_shape(), dtype=torch.float16) for _ in range(2 * step.num_layers)
    )
    example = (
        torch.zeros(1, 1, dtype=torch.int32),
        torch.zeros(1, 1, dtype=torch.int32),
        hidden,
        cross,
        torch.zeros(1, 1, 1, max_positions),
        *caches,
    )
    with torch.no_grad():
        return torch.jit.trace(step, example, check_trace=False)


def convert_stateful(traced, *, config, max_positions: int, encoder_frames: int):
    """ML program with `ct.StateType` caches; encoder frames flexible up to the largest bucket."""
    import coremltools as ct
    import numpy as np

    d_model, layers = int(config.hidden_size), int(config.num_hidden_layers)
    frames = ct.RangeDim(lower_bound=1, upper_bound=encoder_frames, default=encoder_frames)
    step = ct.RangeDim(lower_bound=1, upper_bound=max_positions, default=1)
    cache = (1, int(config.num_key_value_heads), max_positions, int(config.head_dim))
    return ct.convert(
        traced,
        inputs=[
            ct.TensorType(name=contract.DEC_INPUT_ID, shape=(1, 1), dtype=np.int32),
            ct.TensorType(
                name=contract.DEC_ENCODER_HIDDEN, shape=(1, frames, d_model), dtype=np.float16
            ),
            ct.TensorType(name=contract.DEC_CROSS_MASK, shape=(1, 1, 1, frames), dtype=np.float16),
            ct.TensorType(
                name=contract.DEC_ATTENTION_MASK, shape=(1, 1, 1, step), dtype=np.float16
            ),
            ct.TensorType(name=contract.DEC_POSITION_IDS, shape=(1, 1), dtype=np.int32),
        ],
        outputs=[ct.TensorType(name=contract.DEC_LOGITS, dtype=np.float32)],
        states=[
            ct.StateType(wrapped_type=ct.TensorType(shape=cache, dtype=np.float16), name=name)
            for i in range(layers)
            for name in (contract.k_cache(i), contract.v_cache(i))
        ],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.macOS15,
        skip_model_load=True,
    )


def convert_cache_external(traced, *, config, max_positions: int, encoder_frames: int):
    """ML program with every shape fixed (Neural Engine friendly); macOS 14 is enough."""
    import coremltools as ct
    import numpy as np

    d_model, layers = int(config.hidden_size), int(config.num_hidden_layers)
    cache = (1, int(config.num_key_value_heads), max_positions, int(config.head_dim))
    cache_names = [contract.k_cache(i) for i in range(layers)] + [
        contract.v_cache(i) for i in range(layers)
    ]
    return ct.convert(
        traced,
        inputs=[
            ct.TensorType(name=contract.DEC_INPUT_ID, shape=(1, 1), dtype=np.int32),
            ct.TensorType(name=contract.DEC_POSITION_ID, shape=(1, 1), dtype=np.int32),
            ct.TensorType(
                name=contract.DEC_ENCODER_HIDDEN,
                shape=(1, encoder_frames, d_model),
                dtype=np.float16,
            ),
            ct.TensorType(
                name=contract.DEC_CROSS_MASK, shape=(1, 1, 1, encoder_frames), dtype=np.float16
            ),
            ct.TensorType(
                name=contract.DEC_ATTENTION_MASK, shape=(1, 1, 1, max_positions), dtype=np.float16
            ),
            *(ct.TensorType(name=name, shape=cache, dtype=np.float16) for name in cache_names),
        ],
        outputs=[
            ct.TensorType(name=contract.DEC_LOGITS, dtype=np.float32),
            *(
                ct.TensorType(name=contract.cache_out(name), dtype=np.float16)
                for name in cache_names
            ),
        ],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.macOS14,
        skip_model_load=True,
    )

"""The Cohere decoder step over transformers' own modules, without transformers' per-call overhead.

`CohereAsrDecoder.forward` builds masks, position ids and `DynamicCache` lists (a `torch.cat` per
layer per token) on every call. For one token of a 0.15 B-parameter decoder that bookkeeping costs
as much as the arithmetic, so this module runs the same layers itself:

- the self-attention K/V live in one buffer per runtime, (layers, 2, heads, positions, head_dim),
  allocated once and written in place at the fed positions (a static cache);
- the cross-attention K/V are computed once per utterance from the encoder frames that carry audio
  (slicing them is the cross-attention mask: masked frames get weight exp(-inf) = 0);
- a step reuses a preallocated id tensor and reads position embeddings by slicing.

The modules called are the model's own (`q_proj`, `fc1`, the layer norms, `proj_out`), so dynamic
int8 quantisation, bf16 and fp32 all work unchanged. The arithmetic is transformers' (pre-norm
layers, SDPA attention with `scale = head_dim**-0.5`); tests check the tokens equal `generate`'s
in fp32 on tiny seeded models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from .runtime import DecoderSession, EncoderOutput


class StaticDecoder:
    """The decoder's modules plus a KV buffer sized to the decoder's positions; one per runtime."""

    def __init__(self, model, max_positions: int):
        decoder = model.model.decoder
        config = model.config
        self.layers = list(decoder.layers)
        self.embed = decoder.embed_tokens
        self.pos_emb = decoder.pos_emb.weight
        self.embedding_norm = decoder.embedding_layernorm
        self.norm = decoder.norm
        self.head = model.proj_out
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.max_positions = max_positions
        param = self.pos_emb
        self.device, self.dtype = param.device, param.dtype
        self.cache = torch.zeros(
            (len(self.layers), 2, 1, self.kv_heads, max_positions, self.head_dim),
            dtype=self.dtype,
            device=self.device,
        )
        self.ids = torch.zeros((1, max_positions), dtype=torch.long, device=self.device)
        self.owner: object | None = None  # the session whose K/V the buffer holds

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(1, n, heads * head_dim) -> (1, heads, n, head_dim)."""
        return x.view(1, x.shape[1], -1, self.head_dim).transpose(1, 2)

    @torch.inference_mode()
    def cross_kv(self, hidden: torch.Tensor, valid_frames: int) -> list[tuple[torch.Tensor, ...]]:
        """Each layer's cross-attention K and V over the valid encoder frames, once per utterance."""
        frames = hidden[:, : max(1, valid_frames)].to(self.dtype)
        out = []
        for layer in self.layers:
            attn = layer.encoder_attn
            out.append((self._split(attn.k_proj(frames)), self._split(attn.v_proj(frames))))
        return out

    @torch.inference_mode()
    def step(self, start: int, count: int, cross: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """Run `self.ids[:, start:start+count]` at positions start..; logits of the last one."""
        end = start + count
        x = self.embed(self.ids[:, start:end]) + self.pos_emb[start:end]
        x = self.embedding_norm(x)
        # one token attends to every position up to itself; a block of several (the prompt)
        # also needs the causal rule between its own tokens
        mask = None
        if count > 1:
            rows = torch.arange(start, end, device=self.device)[:, None]
            mask = torch.arange(end, device=self.device)[None, :] <= rows
        gqa = self.kv_heads != self.heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = self._split(attn.q_proj(h))
            keys, values = self.cache[i, 0], self.cache[i, 1]
            keys[:, :, start:end] = self._split(attn.k_proj(h))
            values[:, :, start:end] = self._split(attn.v_proj(h))
            a = F.scaled_dot_product_attention(
                q, keys[:, :, :end], values[:, :, :end], attn_mask=mask,
                scale=attn.scaling, enable_gqa=gqa,
            )  # fmt: skip
            x = x + attn.o_proj(a.transpose(1, 2).reshape(1, count, -1))

            cross_attn = layer.encoder_attn
            h = layer.post_attention_layernorm(x)
            q = self._split(cross_attn.q_proj(h))
            ck, cv = cross[i]
            a = F.scaled_dot_product_attention(q, ck, cv, scale=cross_attn.scaling, enable_gqa=gqa)
            x = x + cross_attn.o_proj(a.transpose(1, 2).reshape(1, count, -1))

            x = x + layer.mlp(layer.final_layernorm(x))
        return self.head(self.norm(x[:, -1]))[0]


class StaticDecoderSession(DecoderSession):
    """One utterance on a `StaticDecoder`: cross K/V once, then steps into the shared KV buffer.

    Sessions of one runtime share its buffer, so only the newest may be fed (one utterance at a
    time, on the inference thread: what the engine does); feeding an older one raises rather than
    attend to another utterance's K/V.
    """

    def __init__(self, decoder: StaticDecoder, encoded: EncoderOutput):
        self.decoder = decoder
        self.cross = decoder.cross_kv(encoded.hidden, encoded.valid_frames)
        self.position = 0
        decoder.owner = self

    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        count = len(token_ids)
        if count == 0:
            raise ValueError("feed() needs at least one token")
        if self.decoder.owner is not self:
            raise RuntimeError(
                "this decoder session's KV buffer was taken by a newer session of the same runtime"
            )
        start = self.position
        if start + count > self.decoder.max_positions:
            raise ValueError(f"decoder positions exhausted ({self.decoder.max_positions})")
        ids = self.decoder.ids
        if count == 1:
            ids[0, start] = int(token_ids[0])
        else:
            ids[0, start : start + count] = torch.as_tensor(list(token_ids), dtype=torch.long)
        logits = self.decoder.step(start, count, self.cross)
        self.position += count
        return logits.float().cpu().numpy()

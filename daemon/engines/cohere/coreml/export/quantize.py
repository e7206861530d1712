"""INT8 weight quantisation of converted packages.

Weight-only, symmetric, per output channel everywhere (compute stays fp16) — except the tied token
embedding / LM head, which gets one scale per tensor: the upstream conversion notes found that kept
the EOS margin best, and a per-channel scale on a (vocab, d) matrix used both by a gather (per
token) and a linear (per output logit) would quantise the two uses differently anyway.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

WEIGHT_THRESHOLD = 2048  # tensors with fewer elements (biases, norms) stay fp16


def _vocab_matrix_consts(mlmodel, vocab_size: int) -> list[str]:
    """Names of the const ops holding a (vocab, d) matrix: the embedding and the LM head."""
    program = getattr(mlmodel, "_mil_program", None)
    if program is None:
        return []
    names = []
    for function in program.functions.values():
        for op in function.find_ops(op_type="const"):
            shape = getattr(op.val.val, "shape", ())
            if len(shape) == 2 and vocab_size in shape:
                names.append(op.name)
    return names


def quantize_int8(mlmodel, *, vocab_size: int | None = None):
    """Return an int8-weight copy of `mlmodel` (an ML program fresh from `ct.convert`)."""
    import numpy as np
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    per_channel = OpLinearQuantizerConfig(
        mode="linear_symmetric",
        dtype=np.int8,
        granularity="per_channel",
        weight_threshold=WEIGHT_THRESHOLD,
    )
    per_tensor = OpLinearQuantizerConfig(
        mode="linear_symmetric",
        dtype=np.int8,
        granularity="per_tensor",
        weight_threshold=WEIGHT_THRESHOLD,
    )
    tied = _vocab_matrix_consts(mlmodel, vocab_size) if vocab_size else []
    if tied:
        log.info("per-tensor int8 for the token embedding / LM head: %s", ", ".join(tied))
    config = OptimizationConfig(
        global_config=per_channel, op_name_configs=dict.fromkeys(tied, per_tensor)
    )
    return linear_quantize_weights(mlmodel, config)

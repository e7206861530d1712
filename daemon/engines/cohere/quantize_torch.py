"""Dynamic int8 quantisation of the Cohere model for CPUs without native bf16.

Every `nn.Linear` becomes PyTorch's dynamically quantised linear (weights int8 per output channel,
activations quantised per call; fbgemm's VNNI kernels on x86). The conformer's pointwise
convolutions (kernel 1: 1280 -> 2560 and 1280 -> 1280 in each of the 48 encoder layers, an eighth
of the encoder's weights) are linear layers over the channel axis, so they are rewritten as such
first and quantised too; left in fp32 they would dominate an int8 encoder.

PyTorch marks this eager quantisation API as deprecated in favour of torchao, but it still ships
with torch and needs no extra package; its deprecation warnings are silenced here because they
are not the user's to act on.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


class PointwiseLinear(nn.Module):
    """A kernel-1 `Conv1d` over (batch, channels, time) computed as a linear layer on channels."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def is_pointwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv1d)
        and module.kernel_size == (1,)
        and module.stride == (1,)
        and module.padding == (0,)
        and module.dilation == (1,)
        and module.groups == 1
    )


def pointwise_to_linear(model: nn.Module) -> int:
    """Replace every pointwise `Conv1d` in `model` by a `PointwiseLinear`; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_pointwise(child):
                setattr(parent, name, PointwiseLinear(child))
                replaced += 1
    return replaced


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantise `model` in place: pointwise convolutions and linear layers to dynamic int8."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    pointwise_to_linear(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )

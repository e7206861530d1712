"""Which precision the PyTorch runtime computes in, chosen by what the hardware does natively.

On a CPU, bf16 pays only where the cores multiply bf16 themselves (Intel AMX or AVX512-BF16,
Arm's BF16 extension, Apple M2 and later): there the 2B model's encoder runs ~2.7x faster than in
fp32 with the same tokens on the tiny models (tests measure the agreement). Elsewhere oneDNN
emulates bf16 through fp32 and a matrix product is ~4x *slower* than fp32 (measured on an
AVX512 Ice Lake without BF16), so the default there stays fp32. `int8` is dynamic quantisation
(`quantize_torch.py`: weights int8 per output channel, activations quantised on the fly with
VNNI/fbgemm kernels): it needs no native bf16 and runs a linear layer ~3x faster than fp32 there.

This module imports torch lazily so `--help` and config checks stay instant.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import ConfigError

log = logging.getLogger(__name__)

#: CPU flags (/proc/cpuinfo `flags` on x86, `Features` on Arm) that mean native bf16 arithmetic
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


@dataclass(frozen=True)
class Precision:
    """How weights are stored and computed: `name` is fp32, fp16, bf16 or int8.

    `dtype_name` is the torch dtype the model is loaded in (int8 loads in float32 and then
    quantises its linear layers); `quantize` says whether that step runs.
    """

    name: str
    dtype_name: str
    quantize: bool = False

    @property
    def dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype_name)


FP32 = Precision("fp32", "float32")
FP16 = Precision("fp16", "float16")
BF16 = Precision("bf16", "bfloat16")
INT8 = Precision("int8", "float32", quantize=True)

COMPUTE_TYPES = {
    "float32": FP32,
    "fp32": FP32,
    "float16": FP16,
    "fp16": FP16,
    "bfloat16": BF16,
    "bf16": BF16,
    "int8": INT8,
}


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor listed in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def apple_has_bf16(sysctl_value: str | None) -> bool:
    """Apple silicon's `hw.optional.arm.FEAT_BF16` (1 on M2 and later, 0 or absent on M1)."""
    return (sysctl_value or "").strip() == "1"


def _sysctl(name: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 itself: AMX/AVX512-BF16/Arm BF16, or Apple M2 and later.

    In a container /proc/cpuinfo lists the host's flags, which is what the container's threads
    run on; a VM lists what the hypervisor passes through (bf16 hidden by it is not usable).
    """
    if platform.system() == "Darwin":
        # M1 has no BF16 instructions (bf16 would be emulated there); M2 and later do
        return platform.machine() == "arm64" and apple_has_bf16(
            _sysctl("hw.optional.arm.FEAT_BF16")
        )
    try:
        flags = cpu_flags(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    return bool(flags & BF16_CPU_FLAGS)


def resolve_precision(
    compute_type: str | None, device_type: str, *, native_bf16: bool | None = None
) -> Precision:
    """The precision to load in: `compute_type` when given, else by device and CPU capability.

    Defaults: bf16 on CUDA GPUs that support it (fp16 otherwise), fp16 on Metal, and on a CPU bf16
    where it is native, fp32 elsewhere. int8 is CPU-only (PyTorch's dynamic quantisation has no
    GPU kernels); fp16 on a CPU is refused (no CPU kernels worth running).
    """
    if compute_type is None:
        if device_type == "cuda":
            import torch

            return BF16 if torch.cuda.is_bf16_supported() else FP16
        if device_type == "mps":
            return FP16
        if native_bf16 is None:
            native_bf16 = cpu_has_native_bf16()
        return BF16 if native_bf16 else FP32
    if compute_type not in COMPUTE_TYPES:
        raise ConfigError(
            f"compute_type: {compute_type!r} is not one of float32, bfloat16, float16, int8 "
            "for cohere-torch"
        )
    precision = COMPUTE_TYPES[compute_type]
    if precision is INT8 and device_type != "cpu":
        raise ConfigError(
            f"compute_type: int8 (dynamic quantisation) runs on the CPU only, not {device_type}; "
            "use bfloat16 or float16 on a GPU"
        )
    if precision is FP16 and device_type == "cpu":
        raise ConfigError(
            "compute_type: float16 needs a GPU (cuda or mps); on a CPU use bfloat16 (fast where "
            "the CPU has native bf16), int8 or float32"
        )
    if precision is BF16 and device_type == "cpu":
        if native_bf16 is None:
            native_bf16 = cpu_has_native_bf16()
        if not native_bf16:
            log.warning(
                "compute_type: bfloat16 on a CPU without native bf16 (no AMX, AVX512-BF16 or Arm "
                "BF16): PyTorch emulates it through fp32, several times slower than float32; "
                "use float32 or int8 here"
            )
    return precision

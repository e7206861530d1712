"""Cohere tests compare against transformers in fp32, so the default precision is pinned to fp32.

On a CPU with native bf16 (AMX, AVX512-BF16, Arm BF16) the engine's default would be bf16 and the
token-parity tests would compare bf16 against fp32. Tests of the detection itself pass
`native_bf16` explicitly, and bf16 is tested by asking for it (`compute_type="bfloat16"`).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fp32_by_default(monkeypatch):
    from dictated.engines.cohere import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)

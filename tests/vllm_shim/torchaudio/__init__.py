"""A stand-in for the one torchaudio function vLLM's Cohere Transcribe code imports. TESTS ONLY.

vLLM's `transformers_utils/processors/cohere_asr.py` does `from torchaudio.functional import
melscale_fbanks` at load. PyPI has no torchaudio for torch 2.13 (2.11.1 is the newest, and it does
not load with 2.13), so the CPU vLLM venv the tests use (.ci/run) runs without torchaudio. This
package, put on the vLLM server's PYTHONPATH by tests/vllm_server.py only when the venv lacks a
real torchaudio, provides `functional.melscale_fbanks` in pure torch and nothing else. It is not
part of dictated; the product never imports it. tests/test_vllm_shim.py checks it against
transformers' `mel_filter_bank`.

vLLM's audio module also does `import torchaudio` (for `transforms.Resample`); it only resamples
audio that is not already at the model's rate, and the tests upload 16 kHz WAVs.
"""

from . import functional

__all__ = ["functional"]
__version__ = "0.0+dictated.tests.shim"

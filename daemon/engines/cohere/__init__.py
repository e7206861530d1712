"""Cohere Transcribe as stages: features -> runtime (encoder, decoder steps) -> decoding policy -> tokenizer.

Only the runtime differs between CoreML (`runtime_coreml`) and PyTorch (`runtime_torch`).
"""

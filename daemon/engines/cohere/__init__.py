"""Cohere Transcribe as stages: features -> runtime (encoder, decoder steps) -> decoding policy -> tokenizer.

Only the runtime differs between CoreML (`coreml/`: its engine, runtime, model manager, compile
cache and export) and PyTorch (`runtime_torch`); the stages here are shared by both.
"""

"""Export Cohere Transcribe from its PyTorch checkpoint (transformers) to CoreML packages.

Runs on any OS with coremltools (the `[export]` extra): length-bucketed encoders with
working feature-length masking, a stateful decoder (State API) in the published contract, an
optional cache-external decoder, fp16 or int8 weights, and a manifest. See `pipeline.export_model`.
"""

from .pipeline import ExportOptions, ExportResult, export_model, parse_buckets

__all__ = ["ExportOptions", "ExportResult", "export_model", "parse_buckets"]

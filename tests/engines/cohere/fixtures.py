"""Tiny, seeded Cohere Transcribe models for tests: real transformers architecture, random weights.

A plain module (not a conftest) so the PyTorch engine's tests and the CoreML export's tests build
the very same model directory. `make_tiny_cohere_dir` writes what a real checkpoint directory
holds: `save_pretrained` files (config.json, generation_config.json, model.safetensors) plus a
SentencePiece `tokenizer.model` trained here with byte fallback, and a `vocab.json`
(`{"id": "piece"}`) like the one FluidInference ships next to its CoreML packages.

The vocabulary keeps the published low ids (docs/cohere.md) (<unk> 0, <|nospeech|> 1, <pad> 2, eos 3,
<|startoftranscript|> 4); every other special piece sits at a different id than in the real
16384-piece vocabulary, which is the point: code must look pieces up, not hard-code ids.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

LANGUAGES = ("ar", "de", "el", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "vi", "zh")

# After <unk>/<pad>/eos take 0, 2 and 3, SentencePiece hands user-defined symbols the free ids in
# order: <|nospeech|> -> 1, <|startoftranscript|> -> 4, then the rest from 5 on.
SPECIAL_PIECES: tuple[str, ...] = (
    "<|nospeech|>",
    "<|startoftranscript|>",
    "<|pnc|>",
    "<|nopnc|>",
    "<|startofcontext|>",
    "<|emo:undefined|>",
    "<|noitn|>",
    "<|notimestamp|>",
    "<|nodiarize|>",
    *(f"<|{lang}|>" for lang in LANGUAGES),
)

# Enough text for a few hundred BPE merges; CJK and accented text mostly fall back to byte pieces.
_CORPUS: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a test of the dictation daemon.",
    "speech recognition turns spoken words into written text",
    "please send the report to the team before friday",
    "bonjour tout le monde, ceci est un essai",
    "guten tag, wie geht es dir heute",
    "el rápido zorro marrón salta sobre el perro perezoso",
    "日本語のテキストです",
    "中文文本测试",
)


def train_tiny_tokenizer(
    path: Path, vocab_size: int = 384, *, eos_piece: str = "<|endoftext|>"
) -> Path:
    """Train a byte-fallback BPE SentencePiece model with the Cohere special pieces into `path`.

    SentencePiece's built-in eos (id 3) is `eos_piece`; any other value makes `<|endoftext|>` an
    ordinary user-defined piece at another id (a tokenizer whose eos is not the model's).
    """
    import sentencepiece as spm

    symbols = list(SPECIAL_PIECES)
    if eos_piece != "<|endoftext|>":
        symbols.append("<|endoftext|>")

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 20),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=-1,
        pad_id=2,
        eos_id=3,
        unk_piece="<unk>",
        pad_piece="<pad>",
        eos_piece=eos_piece,
        user_defined_symbols=symbols,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    path.write_bytes(buffer.getvalue())
    return path


def write_vocab_json(tokenizer_model: Path, path: Path) -> Path:
    """Write `{"id": "piece"}` for every piece, the layout of FluidInference's vocab.json."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    vocab = {str(i): sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return path


def tiny_cohere_config(
    vocab_size: int,
    decoder_start_token_id: int,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    encoder_hidden_size: int = 48,
    encoder_layers: int = 2,
    max_position_embeddings: int = 64,
    initializer_range: float = 0.1,
):
    """A `CohereAsrConfig` laid out like the real one: 128 mels, x8 subsampling, two widths.

    `encoder_hidden_size` differs from `hidden_size` so the encoder->decoder projection is a real
    matrix, as in the checkpoint (1280 -> 1024). `decoder_start_token_id` should be the id of "▁",
    the prompt's first token (the checkpoint's generation_config says 13764), so that `generate`
    does not prepend a start token of its own. `initializer_range` is 5x transformers' default:
    at 0.02 a random encoder's output barely varies over time, and the tokens would not depend on
    the audio or its attention mask, which the parity tests must be sensitive to.
    """
    from transformers import CohereAsrConfig

    encoder = {
        "model_type": "parakeet_encoder",
        "hidden_size": encoder_hidden_size,
        "num_hidden_layers": encoder_layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * encoder_hidden_size,
        "subsampling_conv_channels": 8,
        "num_mel_bins": 128,
        "conv_kernel_size": 9,
        "subsampling_factor": 8,
        "initializer_range": initializer_range,
    }
    return CohereAsrConfig(
        encoder_config=encoder,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        decoder_start_token_id=decoder_start_token_id,
        initializer_range=initializer_range,
    )


def make_tiny_cohere_dir(
    path: Path,
    seed: int = 0,
    *,
    max_position_embeddings: int = 64,
    eos_bias: float = 0.0,
    tokenizer_model: Path | None = None,
    **config_overrides,
) -> Path:
    """Build a seeded tiny `CohereAsrForConditionalGeneration` and save a checkpoint-like directory.

    `eos_bias` is added to the LM head's bias at the eos id, which makes the random model stop
    early (tests of the EOS path). `tokenizer_model` reuses an already trained tokenizer (training
    takes ~0.2 s; pass one when building many directories). Returns `path`.
    """
    import sentencepiece as spm
    import torch
    from transformers import CohereAsrForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sp_path = path / "tokenizer.model"
    if tokenizer_model is None:
        train_tiny_tokenizer(sp_path)
    else:
        sp_path.write_bytes(Path(tokenizer_model).read_bytes())
    write_vocab_json(sp_path, path / "vocab.json")
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))

    config = tiny_cohere_config(
        sp.get_piece_size(),
        sp.piece_to_id("▁"),
        max_position_embeddings=max_position_embeddings,
        **config_overrides,
    )
    torch.manual_seed(seed)
    model = CohereAsrForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.proj_out.bias[config.eos_token_id] += eos_bias
    model.generation_config.decoder_start_token_id = config.decoder_start_token_id
    model.save_pretrained(path)
    return path


def load_tiny_model(path: Path):
    """The saved model, in eval mode, as transformers loads it (the parity reference)."""
    from transformers import CohereAsrForConditionalGeneration

    return CohereAsrForConditionalGeneration.from_pretrained(path).eval()


def reference_generate(model, features, prompt: list[int], max_new_tokens: int, **kw):
    """transformers' greedy `generate` on our features with the Cohere decoding settings
    (repetition penalty 1.1, no repeated 3-grams): the reference our decoders are held to."""
    import torch

    x = torch.from_numpy(features.values)[None]
    mask = torch.zeros(1, x.shape[1], dtype=torch.long)
    mask[:, : features.valid_frames] = 1
    return model.generate(
        input_features=x,
        attention_mask=mask,
        decoder_input_ids=torch.tensor([prompt]),
        repetition_penalty=1.1,
        no_repeat_ngram_size=3,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        **kw,
    )


def reference_tokens(model, features, prompt: list[int], max_new_tokens: int, **kw) -> list[int]:
    """`reference_generate`'s new tokens only (eos included)."""
    out = reference_generate(model, features, prompt, max_new_tokens, **kw)
    assert out[0, : len(prompt)].tolist() == prompt  # generate prepended nothing
    return out[0, len(prompt) :].tolist()

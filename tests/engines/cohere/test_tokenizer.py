"""Cohere tokenizer: prompts as transformers' processor builds them, byte-fallback round trips."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import sentencepiece as spm

from dictated.engines.cohere.tokenizer import LANGUAGES, REAL_IDS, CohereTokenizer
from dictated.errors import ModelError
from tests.engines.cohere.fixtures import LANGUAGES as FIXTURE_LANGUAGES
from tests.engines.cohere.fixtures import train_tiny_tokenizer, write_vocab_json

TEXTS = (
    "hello world, this is a test",
    "音声認識はとても便利です",  # not in the tokenizer's training text: byte pieces
    "语音识别 漢字",
    "el rápido zorro ünïcödé — ok",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    train_tiny_tokenizer(path / "tokenizer.model")
    write_vocab_json(path / "tokenizer.model", path / "vocab.json")
    return path


@pytest.fixture(scope="module")
def sp(model_dir):
    return spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir, tmp_path_factory):
    """transformers' own conversion of our tokenizer.model, saved as the tokenizer.json it writes."""
    backend = pytest.importorskip("transformers").TokenizersBackend.from_pretrained(model_dir)
    out = tmp_path_factory.mktemp("hf_tokenizer")
    backend.save_pretrained(out)
    return backend, out / "tokenizer.json"


@pytest.fixture(scope="module", params=["sentencepiece", "vocab.json", "tokenizer.json"])
def tokenizer(request, model_dir, hf_tokenizer):
    if request.param == "sentencepiece":
        return CohereTokenizer.from_sentencepiece(model_dir / "tokenizer.model")
    if request.param == "tokenizer.json":
        return CohereTokenizer.from_tokenizer_json(hf_tokenizer[1])
    return CohereTokenizer.from_vocab_json(model_dir / "vocab.json")


def transformers_prompt(sp, language: str, punctuation: bool) -> list[int]:
    """transformers' own prompt builder, with our SentencePiece model as its tokenizer."""
    processing = pytest.importorskip("transformers.models.cohere_asr.processing_cohere_asr")
    fake_self = SimpleNamespace(
        tokenizer=SimpleNamespace(
            convert_tokens_to_ids=lambda pieces: [sp.piece_to_id(p) for p in pieces]
        )
    )
    return processing.CohereAsrProcessor.get_decoder_prompt_ids(fake_self, language, punctuation)


def test_languages_are_the_fourteen_of_transformers():
    processing = pytest.importorskip("transformers.models.cohere_asr.processing_cohere_asr")
    assert set(LANGUAGES) == processing.LANGUAGES == set(FIXTURE_LANGUAGES)
    assert len(LANGUAGES) == 14


@pytest.mark.parametrize("punctuation", [True, False])
@pytest.mark.parametrize("language", LANGUAGES)
def test_prompt_matches_transformers(tokenizer, sp, language, punctuation):
    prompt = tokenizer.prompt(language, punctuation)
    assert prompt == transformers_prompt(sp, language, punctuation)
    assert len(prompt) == 10 and sp.unk_id() not in prompt
    assert sp.id_to_piece(prompt[4]) == f"<|{language}|>"


def test_unsupported_language_lists_the_supported_ones(tokenizer):
    with pytest.raises(ValueError, match="sv") as info:
        tokenizer.prompt("sv")
    for lang in LANGUAGES:
        assert lang in str(info.value)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_through_byte_fallback(tokenizer, sp, text):
    ids = sp.encode(text)
    assert tokenizer.decode(ids) == text
    if not text.isascii():
        assert any(sp.is_byte(i) for i in ids), "the text should exercise byte-fallback pieces"


def test_cjk_characters_are_three_byte_runs(tokenizer, sp):
    ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in "漢字".encode()]
    assert len(ids) == 6
    assert tokenizer.decode(ids) == "漢字"


def test_special_tokens_are_stripped(tokenizer, sp):
    ids = sp.encode("hello world")
    specials = [p for p in range(sp.get_piece_size()) if sp.id_to_piece(p).startswith("<|")]
    noisy = tokenizer.prompt("en") + ids[:1] + specials[:3] + ids[1:] + [0, 1, 2, 3, 4]
    assert tokenizer.decode(noisy) == "hello world"
    assert tokenizer.eos_id == sp.eos_id() == 3


def test_eos_is_the_endoftext_piece_not_sentencepieces_eos(tmp_path):
    """The model stops at <|endoftext|>; a tokenizer.model whose own eos is another piece
    (here "</s>" at 3, <|endoftext|> elsewhere) must not make us stop at, or strip, the wrong id."""
    path = train_tiny_tokenizer(tmp_path / "tokenizer.model", eos_piece="</s>")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    endoftext = sp.piece_to_id("<|endoftext|>")
    assert sp.eos_id() == 3 and sp.id_to_piece(3) == "</s>" and endoftext not in (3, sp.unk_id())
    write_vocab_json(path, tmp_path / "vocab.json")
    for tokenizer in (
        CohereTokenizer.from_sentencepiece(path),
        CohereTokenizer.from_vocab_json(tmp_path / "vocab.json"),
    ):
        assert tokenizer.eos_id == endoftext
        assert tokenizer.decode(sp.encode("hello") + [endoftext]) == "hello"


def test_eos_falls_back_to_sentencepieces_eos_without_an_endoftext_piece():
    controls = ["<|startofcontext|>", "<|startoftranscript|>", "<|emo:undefined|>", "<|pnc|>"]
    pieces = ["<unk>", "<|nospeech|>", "<pad>", "<|stop|>", *controls, "<|nopnc|>", "<|noitn|>"]
    assert CohereTokenizer(pieces, eos_id=3).eos_id == 3


def test_all_sources_agree_with_transformers(model_dir, sp, hf_tokenizer):
    backend, tokenizer_json = hf_tokenizer
    a = CohereTokenizer.from_sentencepiece(model_dir / "tokenizer.model")
    b = CohereTokenizer.from_vocab_json(model_dir / "vocab.json")
    c = CohereTokenizer.from_tokenizer_json(tokenizer_json)
    ids = sp.encode(" ".join(TEXTS))
    assert a.decode(ids) == b.decode(ids) == c.decode(ids) == " ".join(TEXTS)
    assert a.decode(ids) == backend.decode(ids).strip()
    assert a.vocab_size == b.vocab_size == c.vocab_size == sp.get_piece_size()


def test_from_dir_prefers_sentencepiece_and_names_missing_files(model_dir, tmp_path):
    assert CohereTokenizer.from_dir(model_dir)._sp is not None
    with pytest.raises(ModelError, match="tokenizer.model, tokenizer.json or vocab.json"):
        CohereTokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.json").write_text("not json")
    with pytest.raises(ModelError, match="vocab.json"):
        CohereTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="tokenizer.model"):
        CohereTokenizer.from_dir(tmp_path)


def test_a_vocabulary_without_cohere_pieces_is_refused(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({str(i): f"p{i}" for i in range(50)}))
    with pytest.raises(ModelError, match="startofcontext"):
        CohereTokenizer.from_vocab_json(path)


def _real_layout(moved: str | None = None) -> dict[str, str]:
    pieces = {i: f"piece{i}" for i in range(16384)}
    pieces.update({0: "<unk>", 2: "<pad>", 3: "<|endoftext|>"})
    for piece, i in REAL_IDS.items():
        pieces[i] = piece
    if moved:
        old = REAL_IDS[moved]
        pieces[old], pieces[old + 1] = pieces[old + 1], pieces[old]
    return {str(i): p for i, p in pieces.items()}


def test_the_real_vocabulary_is_checked_against_the_design_table(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(_real_layout()))
    tok = CohereTokenizer.from_vocab_json(path)
    assert tok.prompt("en") == [13764, 7, 4, 16, 62, 62, 5, 9, 11, 13]
    assert tok.prompt("zh", punctuation=False) == [13764, 7, 4, 16, 50, 50, 6, 9, 11, 13]
    path.write_text(json.dumps(_real_layout(moved="<|ja|>")))
    with pytest.raises(ModelError, match="ja"):
        CohereTokenizer.from_vocab_json(path)

"""Cohere Transcribe's tokenizer: decoder prompts in, text out.

Model directories come in three shapes: SentencePiece's `tokenizer.model` (byte-fallback pieces
decode natively), transformers' `tokenizer.json`, or a `vocab.json` of `{"id": "piece"}`
(FluidInference's CoreML folders). Without SentencePiece, runs of `<0xHH>` pieces are buffered and
decoded as UTF-8 (a CJK character is a 3-byte run). Special ids and language tokens are looked up by piece so any
vocabulary works; for the real 16384-piece vocabulary the ids are checked against the published ids (REAL_IDS below; docs/cohere.md).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...errors import ModelError

log = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = (
    "ar", "de", "el", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "vi", "zh",
)  # fmt: skip

PROMPT_PIECES = (
    "▁",
    "<|startofcontext|>",
    "<|startoftranscript|>",
    "<|emo:undefined|>",
    "<|{lang}|>",
    "<|{lang}|>",
    "{pnc}",
    "<|noitn|>",
    "<|notimestamp|>",
    "<|nodiarize|>",
)
EOS_PIECES = ("<|endoftext|>", "</s>", "<eos>")

# The published checkpoint's ids (docs/cohere.md, "Token ids"); used only to check a 16384-piece vocabulary.
REAL_VOCAB_SIZE = 16384
REAL_IDS = {
    "▁": 13764,
    "<|startofcontext|>": 7,
    "<|startoftranscript|>": 4,
    "<|emo:undefined|>": 16,
    "<|pnc|>": 5,
    "<|nopnc|>": 6,
    "<|noitn|>": 9,
    "<|notimestamp|>": 11,
    "<|nodiarize|>": 13,
    "<|nospeech|>": 1,
    **{
        f"<|{lang}|>": i
        for lang, i in {
            "ar": 28, "de": 76, "el": 77, "en": 62, "es": 169, "fr": 69, "it": 97,
            "ja": 98, "ko": 110, "nl": 60, "pl": 148, "pt": 149, "vi": 194, "zh": 50,
        }.items()
    },
}  # fmt: skip
REAL_EOS_ID = 3
LAST_SPECIAL_ID = 4  # ids 0..4 (<unk>, <|nospeech|>, pad, eos, <|startoftranscript|>) never print

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def check_language(language: str) -> str:
    """Return `language` or raise ValueError listing the 14 the model was trained on."""
    if language not in LANGUAGES:
        raise ValueError(
            f"Cohere Transcribe does not support language {language!r}; supported: {', '.join(LANGUAGES)}"
        )
    return language


class CohereTokenizer:
    """Prompt building and detokenisation over one vocabulary (SentencePiece or vocab.json)."""

    def __init__(self, pieces: Sequence[str], sentencepiece=None, eos_id: int | None = None):
        """`eos_id` is used only when the vocabulary has no end-of-text piece (EOS_PIECES)."""
        self._pieces = list(pieces)
        self._ids = {piece: i for i, piece in enumerate(self._pieces)}
        self._sp = sentencepiece
        self.eos_id = self._find_eos(eos_id)
        #: `<|nospeech|>` (id 1 in the published vocabulary): the model's own "silence" answer
        self.nospeech_id = self._ids.get("<|nospeech|>")
        self._skip = {
            i for i, p in enumerate(self._pieces) if p.startswith("<|") and p.endswith("|>")
        }
        self._skip.update(range(min(LAST_SPECIAL_ID + 1, len(self._pieces))))
        self._skip.add(self.eos_id)
        for piece in PROMPT_PIECES[1:4] + ("<|pnc|>", "<|nopnc|>", "<|noitn|>"):
            self.piece_id(piece)  # fail at load, not at the first utterance
        if len(self._pieces) == REAL_VOCAB_SIZE:
            self._check_real_ids()

    @property
    def pieces(self) -> tuple[str, ...]:
        """Every piece, by id: what a `vocab.json` ({"id": "piece"}) holds."""
        return tuple(self._pieces)

    @classmethod
    def from_dir(cls, model_dir: Path) -> CohereTokenizer:
        """Load `tokenizer.model`, else `tokenizer.json`, else `vocab.json`; ModelError if none."""
        model_dir = Path(model_dir)
        for name, loader in (
            ("tokenizer.model", cls.from_sentencepiece),
            ("tokenizer.json", cls.from_tokenizer_json),
            ("vocab.json", cls.from_vocab_json),
        ):
            if (model_dir / name).is_file():
                return loader(model_dir / name)
        raise ModelError(
            f"{model_dir} has no tokenizer: expected tokenizer.model, tokenizer.json or vocab.json"
        )

    @classmethod
    def from_sentencepiece(cls, path: Path) -> CohereTokenizer:
        import sentencepiece as spm

        try:
            sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot read SentencePiece model {path}: {exc}") from exc
        pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        # SentencePiece's own eos is a training-time setting; the model stops at <|endoftext|>,
        # which the real tokenizer need not have registered as eos (nor at id 3).
        eos = sp.eos_id()
        return cls(pieces, sentencepiece=sp, eos_id=eos if eos >= 0 else None)

    @classmethod
    def from_vocab_json(cls, path: Path) -> CohereTokenizer:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            by_id = {int(k): str(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"cannot read vocabulary {path}: expected a JSON object {{id: piece}} ({exc})"
            ) from exc
        if not by_id or sorted(by_id) != list(range(len(by_id))):
            raise ModelError(f"vocabulary {path} must map every id 0..N-1 to a piece")
        return cls([by_id[i] for i in range(len(by_id))])

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> CohereTokenizer:
        """A Hugging Face `tokenizer.json` (what transformers saves): its pieces, decoded like vocab.json."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            vocab = data["model"]["vocab"]
            if isinstance(vocab, dict):  # BPE / WordLevel: {piece: id}
                by_id = {int(i): str(p) for p, i in vocab.items()}
            else:  # Unigram: [[piece, score], ...] in id order
                by_id = {i: str(entry[0]) for i, entry in enumerate(vocab)}
            by_id.update({int(t["id"]): str(t["content"]) for t in data.get("added_tokens", [])})
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"cannot read tokenizer {path}: {exc}") from exc
        if not by_id or sorted(by_id) != list(range(len(by_id))):
            raise ModelError(f"tokenizer {path} must give every id 0..N-1 a piece")
        return cls([by_id[i] for i in range(len(by_id))])

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def piece_id(self, piece: str) -> int:
        try:
            return self._ids[piece]
        except KeyError:
            raise ModelError(
                f"the tokenizer has no {piece!r} piece; is this a Cohere Transcribe model?"
            ) from None

    def id_to_piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def prompt(self, language: str, punctuation: bool = True) -> list[int]:
        """The 10-token decoder prompt, as transformers' `CohereAsrProcessor.get_decoder_prompt_ids`."""
        check_language(language)
        pnc = "<|pnc|>" if punctuation else "<|nopnc|>"
        return [self.piece_id(p.format(lang=language, pnc=pnc)) for p in PROMPT_PIECES]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` without special tokens (ids <= 4, eos, and every `<|...|>` piece)."""
        kept = [int(i) for i in ids if int(i) not in self._skip and 0 <= int(i) < len(self._pieces)]
        if self._sp is not None:
            return self._sp.decode(kept).strip()
        return self._decode_pieces(self._pieces[i] for i in kept)

    @staticmethod
    def _decode_pieces(pieces: Iterable[str]) -> str:
        out: list[str] = []
        pending = bytearray()  # a run of byte-fallback pieces, decoded as one UTF-8 sequence
        for piece in pieces:
            byte = _BYTE_PIECE.match(piece)
            if byte:
                pending.append(int(byte.group(1), 16))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            out.append(piece)
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out).replace("▁", " ").strip()

    def _find_eos(self, fallback: int | None) -> int:
        """The id of the first EOS_PIECES piece present, else `fallback`, else REAL_EOS_ID."""
        for piece in EOS_PIECES:
            if piece in self._ids:
                return self._ids[piece]
        if fallback is not None:
            log.warning(
                "no end-of-text piece among %s; using the tokenizer's eos id %s",
                EOS_PIECES,
                fallback,
            )
            return fallback
        log.warning("no end-of-text piece among %s; using id %s", EOS_PIECES, REAL_EOS_ID)
        return REAL_EOS_ID

    def _check_real_ids(self) -> None:
        wrong = {p: (self._ids.get(p), i) for p, i in REAL_IDS.items() if self._ids.get(p) != i}
        if self.eos_id != REAL_EOS_ID:
            wrong["eos"] = (self.eos_id, REAL_EOS_ID)
        if wrong:
            detail = ", ".join(
                f"{p} is {got} (expected {want})" for p, (got, want) in wrong.items()
            )
            raise ModelError(f"this 16384-piece vocabulary is not Cohere Transcribe's: {detail}")

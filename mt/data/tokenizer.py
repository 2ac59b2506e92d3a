"""SentencePiece subword tokenizers for the source and target side (one shared model when the vocabulary is joint).

Every model is trained with the same special ids, so ``PAD_ID`` etc. hold for any run.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from mt.errors import MTError
from mt.text import one_line

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "Tokenizer", "train_sentencepiece"]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
log = logging.getLogger("mt")


def train_sentencepiece(
    sentences: Iterable[str],
    path: Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    threads: int = 2,
    seed_sentencepiece_size: int = 1_000_000,
    byte_fallback: bool = False,
) -> int:
    """Train a SentencePiece model on all of ``sentences`` and write it to ``path``; return the vocabulary size.

    ``sentences`` is streamed into SentencePiece (which holds them: pass a sample of a large corpus). It must be
    re-iterable (a list, or an object whose ``__iter__`` starts over): a vocabulary too large for the corpus is
    lowered to the largest size SentencePiece accepts, with a warning, and trained again.
    """
    if not any(True for s in sentences if s):
        raise MTError(f"cannot train SentencePiece model {path.name}: no non-empty sentences")
    size = vocab_size
    while True:
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(s for s in sentences if s),
                model_writer=model,
                vocab_size=size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
                input_sentence_size=0,  # all: SentencePiece's own sample differs from one process to the next
                seed_sentencepiece_size=seed_sentencepiece_size,
                num_threads=max(1, threads),
                max_sentence_length=1 << 16,
                minloglevel=2,
            )
            break
        except RuntimeError as e:
            # e.g. "Vocabulary size too high (8000). Please set it to a value <= 1234."
            match = re.search(r"<= *(\d+)", str(e))
            if match and int(match.group(1)) < size:
                lower = int(match.group(1))
                log.warning("vocabulary size %d is too large for this corpus (%s): using %d", size, path.name, lower)
                size = lower
                continue
            small = re.search(r"smaller than required_chars\. *\d+ vs (\d+)", str(e))
            if small and byte_fallback:
                raise MTError(f"data.vocab_size {size} is too small for {path.name} with byte fallback (256 byte "
                              f"pieces): give at least {small.group(1)} or data.byte_fallback=false") from None
            raise MTError(f"SentencePiece training failed for {path.name}: {e}") from None
    path.write_bytes(model.getvalue())
    return size


class Tokenizer:
    """Encodes source text and decodes target ids. ``src`` and ``tgt`` are the same model for a joint vocabulary."""

    def __init__(self, src_model: Path, tgt_model: Path):
        self.src_model_path, self.tgt_model_path = Path(src_model), Path(tgt_model)
        self.src = self._load(self.src_model_path)
        self.tgt = self.src if self.tgt_model_path == self.src_model_path else self._load(self.tgt_model_path)

    @classmethod
    def from_bytes(cls, src_model: bytes, tgt_model: bytes | None = None, name: str = "model file") -> Tokenizer:
        """The tokenizer of serialised SentencePiece models (``mt export`` files carry them); ``tgt_model`` None:
        one joint model."""
        tok = cls.__new__(cls)
        tok.src_model_path = tok.tgt_model_path = None
        tok.src = cls._from_proto(src_model, name)
        tok.tgt = tok.src if tgt_model is None else cls._from_proto(tgt_model, name)
        return tok

    @staticmethod
    def _from_proto(blob: bytes, name: str) -> spm.SentencePieceProcessor:
        try:
            return spm.SentencePieceProcessor(model_proto=blob)
        except (RuntimeError, TypeError) as e:
            raise MTError(f"cannot load the tokenizer stored in {name}: {e}") from None

    @staticmethod
    def _load(path: Path) -> spm.SentencePieceProcessor:
        if not path.is_file():
            raise MTError(f"tokenizer model not found: {path} (run `mt prepare` first)")
        proc = spm.SentencePieceProcessor()
        try:
            proc.load(str(path))
        except (OSError, RuntimeError) as e:
            raise MTError(f"cannot load tokenizer model {path}: {e}") from None
        return proc

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self.src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def src_pieces(self, text: str) -> list[str]:
        return self.src.encode(text, out_type=str)

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        """Target ids -> text, without <unk> (SentencePiece writes it as " ⁇ "): a translation never shows it. Nor
        does it hold a line break or another control character (byte pieces can spell any, e.g. sampled from a
        barely trained model): each run of them becomes one space, so line i of the output stays line i's."""
        # One row per call: SentencePiece decodes a list of rows through a thread pool, whose cost per call is many
        # times a short row's decoding (docs/results.md, "Speed"), and translation decodes one sentence at a time.
        return [one_line(self.tgt.decode([i for i in row if i != UNK_ID])) for row in ids]

    def decode_src(self, ids: list[list[int]]) -> list[str]:
        return [self.src.decode(row) for row in ids]

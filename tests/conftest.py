"""Shared fixtures: small synthetic parallel corpora written by the tests themselves."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

SRC_WORDS = "the a dog cat man woman child red blue green big small runs jumps sits eats near under over with".split()
TGT_WORDS = "der ein hund katze mann frau kind rot blau grün groß klein rennt springt sitzt isst nahe unter über mit".split()
LEXICON = dict(zip(SRC_WORDS, TGT_WORDS))


def synthetic_pairs(n: int, seed: int, min_words: int = 3, max_words: int = 8) -> list[tuple[str, str]]:
    """A toy language pair: the target is the word-by-word translation of the source, in reverse order."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.choice(SRC_WORDS) for _ in range(rng.randint(min_words, max_words))]
        pairs.append((" ".join(words), " ".join(LEXICON[w] for w in reversed(words))))
    return pairs


def write_split(folder: Path, name: str, pairs: list[tuple[str, str]], src: str = "en", tgt: str = "de",
                gz: bool = False) -> None:
    for lang, side in ((src, 0), (tgt, 1)):
        text = "".join(p[side] + "\n" for p in pairs).encode("utf-8")
        path = folder / f"{name}.{lang}{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(text) if gz else text)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """train (400 pairs, gzipped), val (40), test_toy (30) in a fresh folder."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_split(folder, "train", synthetic_pairs(400, seed=1), gz=True)
    write_split(folder, "val", synthetic_pairs(40, seed=2))
    write_split(folder, "test_toy", synthetic_pairs(30, seed=3))
    return folder

"""Shared fixtures: small synthetic parallel corpora written by the tests themselves."""

from __future__ import annotations

import gzip
import random
import socket
from pathlib import Path

import pytest

SRC_WORDS = "the a dog cat man woman child red blue green big small runs jumps sits eats near under over with".split()
TGT_WORDS = "der ein hund katze mann frau kind rot blau grün groß klein rennt springt sitzt isst nahe unter über mit".split()
LEXICON = dict(zip(SRC_WORDS, TGT_WORDS))


def synthetic_pairs(n: int, seed: int, min_words: int = 3, max_words: int = 8) -> list[tuple[str, str]]:
    """A toy language pair: the target is the word-by-word translation of the source."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.choice(SRC_WORDS) for _ in range(rng.randint(min_words, max_words))]
        pairs.append((" ".join(words), " ".join(LEXICON[w] for w in words)))
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


TINY_OVERRIDES = ["data.vocab_size=60", "model.emb_dim=32", "model.hidden_dim=64", "model.dropout=0.0",
                  "train.batch_tokens=400", "train.lr=0.01", "train.max_minutes=0", "train.log_every=5",
                  "train.patience=50", "decode.beam=3", "train.threads=1"]


def free_port() -> int:
    """A TCP port nobody listens on now, so that two test runs on one machine never share a DDP rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_and_train(root: Path, epochs: int, extra: list[str] | None = None):
    """Prepare the synthetic corpus into root/run and train the tiny model for ``epochs`` epochs."""
    from mt.cli import main

    folder = root / "corpus"
    if not folder.exists():
        folder.mkdir(parents=True)
        write_split(folder, "train", synthetic_pairs(600, seed=1), gz=True)
        write_split(folder, "val", synthetic_pairs(40, seed=2))
        write_split(folder, "test_toy", synthetic_pairs(30, seed=3))
    run = root / "run"
    overrides = TINY_OVERRIDES + [f"train.max_epochs={epochs}"] + (extra or [])
    assert main(["prepare", "--run", str(run), "--data-dir", str(folder), "--src", "en", "--tgt", "de",
                 "--config", "configs/tiny.yaml", *overrides]) == 0
    assert main(["train", "--run", str(run), *overrides]) == 0
    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained for 8 epochs on the synthetic corpus with the default plateau schedule (shared by the
    decoding and eval tests)."""
    return prepare_and_train(tmp_path_factory.mktemp("trained"), epochs=8, extra=["train.schedule=plateau"])

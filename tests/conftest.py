"""Shared fixtures: small synthetic parallel corpora written by the tests themselves."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import socket
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one torch thread each, and each
    # `mt` process it starts too (mt.device honours OMP_NUM_THREADS), or the threads of two workers spin against
    # each other on the same cores (a 1.6 s test took 30)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

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


# Tests that use these fixtures run the whole pipeline (prepare, train, translate): the slow tier
END_TO_END_FIXTURES = {"prepared_tiny", "trained_run", "train_tiny"}


def pytest_collection_modifyitems(items) -> None:
    """Mark every end-to-end test ``slow``: `make test-fast` (``-m "not slow"``) runs the rest."""
    for item in items:
        if END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


TINY_OVERRIDES = ["data.vocab_size=60", "data.byte_fallback=false", "model.emb_dim=32", "model.hidden_dim=64", "model.dropout=0.0",
                  "train.batch_tokens=400", "train.lr=0.01", "train.max_minutes=0", "train.log_every=5",
                  "train.patience=50", "decode.beam=3", "train.threads=1"]


def free_port() -> int:
    """A TCP port nobody listens on now, so that two test runs on one machine never share a DDP rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_prepared(prepared: Path, run: Path) -> Path:
    """A new run folder holding a copy of a prepared run's data and config (no SentencePiece training again)."""
    run.mkdir(parents=True)
    shutil.copytree(prepared / "data", run / "data")
    shutil.copy(prepared / "config.yaml", run / "config.yaml")
    return run


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """train (600 pairs, gzipped), val (40), test_toy (30), written once per test session."""
    folder = tmp_path_factory.mktemp("tiny-corpus")
    write_split(folder, "train", synthetic_pairs(600, seed=1), gz=True)
    write_split(folder, "val", synthetic_pairs(40, seed=2))
    write_split(folder, "test_toy", synthetic_pairs(30, seed=3))
    return folder


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory, tiny_corpus) -> Path:
    """The tiny corpus prepared once per test session (configs/tiny.yaml and TINY_OVERRIDES): tests train copies."""
    from mt.cli import main

    run = tmp_path_factory.mktemp("prepared") / "run"
    assert main(["prepare", "--run", str(run), "--data-dir", str(tiny_corpus), "--src", "en", "--tgt", "de",
                 "--config", "configs/tiny.yaml", *TINY_OVERRIDES]) == 0
    return run


def train_copy(prepared: Path, run: Path, epochs: int, extra: list[str] | None = None) -> Path:
    """Train the tiny model for ``epochs`` epochs in ``run``, a new copy of ``prepared``."""
    from mt.cli import main

    copy_prepared(prepared, run)
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, f"train.max_epochs={epochs}", *(extra or [])]) == 0
    return run


@pytest.fixture
def train_tiny(tmp_path, prepared_tiny):
    """``train_tiny(epochs, extra=[...], name="run")``: a tiny model trained in tmp_path/name from the session's
    prepared corpus, with TINY_OVERRIDES and ``extra``."""
    def train(epochs: int, extra: list[str] | None = None, name: str = "run") -> Path:
        return train_copy(prepared_tiny, tmp_path / name, epochs, extra)
    return train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, prepared_tiny) -> Path:
    """A tiny model trained for 8 epochs on the synthetic corpus with the default plateau schedule (shared by the
    decoding and eval tests: they must not change it)."""
    return train_copy(prepared_tiny, tmp_path_factory.mktemp("trained") / "run", 8)

"""The learning-rate schedule and the token-budget batches, tested directly (no training)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mt.config import TrainConfig
from mt.data.batching import make_batches
from mt.train.schedule import LRSchedule


def schedule(**kwargs) -> LRSchedule:
    return LRSchedule(TrainConfig(**{"lr": 1.0, "warmup_steps": 0, **kwargs}))


@pytest.mark.parametrize("kind", ["constant", "plateau", "inverse_sqrt"])
def test_warmup_is_linear_from_zero(kind):
    s = schedule(schedule=kind, warmup_steps=4)
    assert [s.lr(step) for step in (1, 2, 3, 4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_inverse_sqrt_decays_after_warmup():
    s = schedule(schedule="inverse_sqrt", warmup_steps=4)
    assert s.lr(16) == pytest.approx(0.5) and s.lr(64) == pytest.approx(0.25)
    assert schedule(schedule="inverse_sqrt").lr(100) == pytest.approx(0.1)  # no warm-up: (1 / step) ** 0.5


def test_plateau_decays_after_patience_validations_without_improvement():
    s = schedule(schedule="plateau", lr_decay=0.5, lr_patience=2, min_lr=0.0)
    assert [s.observe(x) for x in (10.0, 12.0, 11.0)] == [False, False, False]  # one bad validation: patience 2
    assert s.lr(100) == 1.0
    assert s.observe(12.0) is True  # a tie is no improvement: the second bad one decays
    assert s.lr(100) == 0.5
    assert [s.observe(x) for x in (12.5, 12.0, 13.0, 12.9)] == [False, False, False, False]  # the count restarts
    assert s.lr(100) == 0.5


def test_plateau_never_goes_below_min_lr_and_stops_decaying_there():
    s = schedule(schedule="plateau", lr_decay=0.5, lr_patience=1, min_lr=0.2)
    s.observe(1.0)
    decays = [s.observe(0.0) for _ in range(6)]
    assert decays == [True, True, True, False, False, False]  # 0.5, 0.25, 0.125 -> then at the floor
    assert s.lr(100) == 0.2
    assert s.lr(1) == 0.2  # the floor holds from the first step when there is no warm-up


def test_loss_plateau_ignores_bleu_noise_while_the_loss_falls():
    """A stalled run (a Multi30k-sized pair, morphologically rich target): BLEU is noise near zero
    while validation loss falls 13% an epoch. Watching BLEU halved the rate twice in four epochs; watching the
    loss with a 1% threshold never decays, and does decay once the loss really stalls."""
    losses, bleus = [5.766, 4.964, 4.508, 4.225], [0.13, 0.53, 0.16, 0.34]
    by_bleu = schedule(schedule="plateau", lr_patience=1, plateau_metric="bleu")
    assert [by_bleu.observe(b, step) for step, b in enumerate(bleus, 1)] == [False, False, True, True]
    by_loss = schedule(schedule="plateau", lr_patience=1, plateau_metric="loss", plateau_threshold=0.01)
    assert not any(by_loss.observe(-x, step) for step, x in enumerate(losses, 1))
    assert by_loss.lr(10) == 1.0
    assert by_loss.observe(-4.200, 5) is True  # 0.6% better than 4.225: not progress, a plateau
    assert by_loss.lr(10) == 0.5


def test_relative_threshold_and_warmup():
    s = schedule(schedule="plateau", lr_patience=1, plateau_threshold=0.1, warmup_steps=100)
    s.observe(10.0, 50)
    assert s.observe(10.5, 60) is False  # 5% better is below the 10% threshold, but still warming up
    assert s.observe(10.9, 100) is True  # the same after the warm-up: a plateau
    assert s.observe(11.1, 120) is False  # 11% over the best (10.0): progress
    assert s.state_dict()["best"] == 11.1


@pytest.mark.parametrize("kind", ["constant", "inverse_sqrt"])
def test_only_plateau_reacts_to_validation(kind):
    s = schedule(schedule=kind, lr_patience=1)
    before = s.lr(50)
    assert not any(s.observe(x) for x in (5.0, 1.0, 1.0, 1.0))
    assert s.lr(50) == before


def test_schedule_state_round_trips():
    s = schedule(schedule="plateau", lr_patience=1)
    s.observe(3.0)
    s.observe(2.0)
    again = schedule(schedule="plateau", lr_patience=1)
    again.load_state_dict(s.state_dict())
    assert again.lr(10) == s.lr(10) == 0.5
    assert again.observe(2.5) == s.observe(2.5)


def _lengths(n: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)], [rng.randint(1, 40) for _ in range(n)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("budget", [7, 100, 999])
def test_batches_cover_each_sentence_once_within_the_budget(shuffle, budget):
    src, tgt = _lengths(500, seed=budget)
    batches = make_batches(src, tgt, budget, shuffle=shuffle, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        padded = len(b) * max(max(tgt[i] + 1, src[i]) for i in b)  # the longer padded side, EOS/BOS included
        assert padded <= budget or len(b) == 1  # only a sentence longer than the budget goes alone


def test_batches_without_targets_count_source_tokens():
    src = [5, 5, 5, 5, 9]
    assert make_batches(src, None, 10) == [[4], [2, 3], [0, 1]]  # longest first, deterministic


def test_seeded_shuffle_is_reproducible_and_seed_dependent():
    src, tgt = _lengths(300, seed=1)
    first = make_batches(src, tgt, 200, shuffle=True, seed=7)
    assert make_batches(src, tgt, 200, shuffle=True, seed=7) == first
    assert make_batches(src, tgt, 200, shuffle=True, seed=8) != first
    longest = [max(max(tgt[i] + 1, src[i]) for i in b) for b in first]
    assert longest != sorted(longest, reverse=True)  # the batch order is shuffled, not longest first as unshuffled


def test_sorted_batches_keep_padding_small():
    src, tgt = _lengths(1000, seed=2)
    batches = make_batches(src, tgt, 400)
    real = sum(max(tgt[i] + 1, src[i]) for i in range(1000))
    padded = sum(len(b) * max(max(tgt[i] + 1, src[i]) for i in b) for b in batches)
    assert padded < 1.1 * real


def sentence_by_sentence_batches(src, tgt, budget, shuffle, seed):
    """The definition the vectorised ``make_batches`` must keep (the loop it replaced, so Multi30k's batches
    stay the same): sort by (longer padded side, source length, seeded noise, index), add sentences while the
    batch's rows x longest row fit the budget, then shuffle (or reverse) the batch order with the same seed."""
    rng = random.Random(seed)
    noise = [rng.random() for _ in src] if shuffle else [0.0] * len(src)
    size = [max(t + 1, s) for s, t in zip(src, tgt)] if tgt is not None else [max(s, 1) for s in src]
    batches, current = [], []
    for i in sorted(range(len(src)), key=lambda i: (size[i], src[i], noise[i], i)):
        if current and size[i] * (len(current) + 1) > budget:
            batches.append(current)
            current = []
        current.append(i)
    batches += [current] if current else []
    rng.shuffle(batches) if shuffle else batches.reverse()
    return batches


@pytest.mark.parametrize("trial", range(40))
def test_vectorised_batches_equal_the_sentence_by_sentence_definition(trial):
    rng = random.Random(trial)
    n, budget, shuffle = rng.randint(0, 300), rng.choice([1, 10, 60, 400, 4000]), trial % 2 == 0
    src = [rng.randint(0, 50) for _ in range(n)]
    tgt = [rng.randint(0, 50) for _ in range(n)] if trial % 4 < 3 else None
    expected = sentence_by_sentence_batches(src, tgt, budget, shuffle, seed=trial)
    assert make_batches(src, tgt, budget, shuffle=shuffle, seed=trial) == expected
    assert make_batches(np.array(src), None if tgt is None else np.array(tgt), budget, shuffle, trial) == expected

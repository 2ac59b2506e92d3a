"""experiments.transfer: every arm gets the same budget; the table puts each arm beside training from scratch."""

from __future__ import annotations

from experiments.transfer import budget, parse_args, table


def test_every_arm_of_a_size_gets_the_same_budget_in_minutes_or_epochs():
    by_minutes = parse_args(["--pairs", "3000", "10000", "--minutes", "5", "8", "--threads", "1"])
    assert budget(by_minutes, 0)[0] == "train.max_minutes=5" and budget(by_minutes, 1)[0] == "train.max_minutes=8"
    assert "train.patience=100000" in budget(by_minutes, 0) and budget(parse_args([]), 1)[0] == "train.max_minutes=8"  # no early stop: each arm uses its minutes
    by_epochs = parse_args(["--pairs", "3000", "10000", "20000", "--epochs", "30", "12"])
    assert [budget(by_epochs, i)[0] for i in range(3)] == ["train.max_epochs=30", "train.max_epochs=12",
                                                             "train.max_epochs=12"]
    assert "model.share_embeddings=false" in budget(by_epochs, 0)  # the LM arm loads one LM into each side


def test_the_table_gives_each_arm_its_test_bleu_gain_over_scratch_and_best_validation():
    arm = lambda test, val: {"test_bleu": test, "best_val_bleu": val}  # noqa: E731
    results = [{"pairs": 3000, "monolingual_sentences": 26000, "budget": "train.max_minutes=5",
                "scratch": arm(7.0, 8.0), "parent": arm(12.5, 13.0), "backtrans": arm(9.25, 10.0)}]
    header, _, row = table(results, ["scratch", "parent", "backtrans"], "test_2016_flickr")
    assert header.count("|") == 7 and "parent model: test_2016_flickr BLEU" in header
    assert row == "| 3,000 | 26,000 | train.max_minutes=5 | 7.00 (8.00) | 12.50 +5.50 (13.00) | 9.25 +2.25 (10.00) |"

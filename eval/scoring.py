"""sacreBLEU scores with their signatures: cased BLEU and chrF on detokenised output, plus lowercased BLEU
(for comparison with papers that report it)."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF

__all__ = ["score"]


def score(hypotheses: list[str], references: list[str]) -> dict:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metrics = {"bleu": BLEU(), "chrf": CHRF(), "bleu_lowercase": BLEU(lowercase=True)}
    result, signature = {}, {}
    for name, metric in metrics.items():
        result[name] = round(metric.corpus_score(hypotheses, [references]).score, 2)
        signature[name] = str(metric.get_signature())
    return {**result, "signature": signature}

"""sacreBLEU scores with their signatures, for one system or several compared.

Metrics: cased BLEU, chrF, chrF++ and TER on detokenised output, plus lowercased BLEU (for comparison with papers
that report it). BLEU's tokenizer follows the target language when none is given: sacreBLEU's ``zh`` for Chinese,
``ja-mecab``/``ko-mecab`` for Japanese and Korean (their dictionaries come with the ``ja``/``ko`` extras of this
package; nothing downloads at run time), ``13a`` otherwise; the signature names it. Several systems are compared
with sacreBLEU's paired tests against the first (bootstrap resampling by default, approximate randomization on
request), each score with its 95% confidence interval.
"""

from __future__ import annotations

import logging

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import PairedTest

from mt.errors import MTError
from mt.text import one_line

__all__ = ["METRICS", "compare", "comparison_table", "score"]

METRICS = ("bleu", "chrf", "chrf++", "ter")  # the order of tables and reports
CJK = {"zh", "ja", "ko"}
_EXTRA = {"ja-mecab": "ja", "ko-mecab": "ko"}


def _metrics(tgt_lang: str = "", tokenize: str | None = None, references: list[list[str]] | None = None
             ) -> dict[str, Metric]:
    """name -> sacreBLEU metric (``references`` cached in it, as sacreBLEU's command line does)."""
    lang = (tgt_lang or "").split("-")[0].split("_")[0].lower()
    try:
        return {"bleu": BLEU(tokenize=tokenize, trg_lang=lang, references=references),
                "chrf": CHRF(references=references),
                "chrf++": CHRF(word_order=2, references=references),
                "ter": TER(asian_support=lang in CJK, references=references)}
    except (ImportError, RuntimeError) as e:  # MeCab and its dictionary are optional
        chosen = tokenize or BLEU._TOKENIZER_MAP.get(lang, "13a")
        extra = _EXTRA.get(chosen)
        why = "MeCab and its dictionary are not installed" if extra else one_line(str(e))
        hint = f'pip install "mt-lstm[{extra}]"' if extra else "install what it needs"
        raise MTError(f"BLEU's {chosen} tokenizer for '{lang}' cannot load ({why}): {hint}, or choose another with "
                      "--tokenize (char, 13a, ...)") from None


def score(hypotheses: list[str], references: list[str], tgt_lang: str = "", tokenize: str | None = None) -> dict:
    """-> {"bleu", "chrf", "chrf++", "ter", "bleu_lowercase", "signature": {metric: sacreBLEU signature}}."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metrics = _metrics(tgt_lang, tokenize)
    metrics["bleu_lowercase"] = BLEU(lowercase=True, tokenize=tokenize, trg_lang=metrics["bleu"].trg_lang)
    result, signature = {}, {}
    for name, metric in metrics.items():
        result[name] = round(metric.corpus_score(hypotheses, [references]).score, 2)
        signature[name] = str(metric.get_signature())
    return {**result, "signature": signature}


def compare(systems: list[tuple[str, list[str]]], references: list[str], tgt_lang: str = "",
            tokenize: str | None = None, test: str = "bs", samples: int | None = None) -> dict:
    """Each system's scores with 95% confidence intervals and, from the second on, the p-value of its difference
    from the first (``test``: ``bs`` paired bootstrap, ``ar`` approximate randomization; ``samples`` resamples or
    trials, sacreBLEU's defaults 1,000 and 10,000). One system: its scores and bootstrap intervals."""
    for name, hyps in systems:
        if len(hyps) != len(references):
            raise MTError(f"{name} has {len(hyps):,} lines but the reference has {len(references):,}")
    metrics = _metrics(tgt_lang, tokenize, [references])
    samples = samples or (1000 if test == "bs" else 10000)
    if len(systems) == 1:
        (name, hyps), = systems
        out = {"test": None, "samples": samples, "signature": {}, "systems": [{"name": name}]}
        for key, metric in metrics.items():
            s = metric.corpus_score(hyps, None, n_bootstrap=samples)
            out["systems"][0][key] = {"score": _round(s.score, 2), "mean": _round(s._mean, 2), "ci": _round(s._ci, 2)}
            out["signature"][key] = str(metric.get_signature())
        return out
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)  # its progress lines, one per metric and system
    paired = PairedTest(systems, {m.__class__.__name__ + str(i): m for i, m in enumerate(metrics.values())}, None,
                        test_type=test, n_samples=samples, n_ar_confidence=1000 if test == "ar" else -1)
    signatures, table = paired()
    columns = [c for c in table if c != "System"]  # sacreBLEU's metric names (BLEU, chrF2, chrF2++, TER), in order
    out = {"test": "paired bootstrap" if test == "bs" else "approximate randomization", "samples": samples,
           "signature": {key: str(signatures[column]) for key, column in zip(metrics, columns)}, "systems": []}
    for i, (name, hyps) in enumerate(systems):
        row = {"name": name}
        for key, column in zip(metrics, columns):
            r = table[column][i]
            # sacreBLEU's bootstrap gives identical outputs p = 1/(samples+1), "significant"; nothing differs
            p = 1.0 if i and hyps == systems[0][1] else r.p_value
            row[key] = {"score": _round(r.score, 2), "mean": _round(r.mean, 2), "ci": _round(r.ci, 2),
                        **({"p_value": _round(p, 4)} if p is not None else {})}
        out["systems"].append(row)
    return out


def _round(x, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)  # sacreBLEU's resampled values are numpy floats


def comparison_table(result: dict) -> str:
    """A Markdown table of ``compare``'s result: score (mean ± 95% CI) and p-value against the first system."""
    keys = [k for k in METRICS if k in result["systems"][0]]
    header = "| system | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    rows = []
    for i, row in enumerate(result["systems"]):
        cells = []
        for key in keys:
            r = row[key]
            cell = f"{r['score']:.2f}" + (f" ({r['mean']:.2f} ± {r['ci']:.2f})" if r.get("ci") is not None else "")
            if "p_value" in r:
                cell += f", p = {r['p_value']:.4f}" + (" *" if r["p_value"] < 0.05 else "")
            cells.append(cell)
        rows.append(f"| {'baseline: ' if i == 0 and len(result['systems']) > 1 else ''}{row['name']} | "
                    + " | ".join(cells) + " |")
    note = (f"\n{result['test']}, {result['samples']:,} samples; * p < 0.05 against the baseline (TER: lower is "
            "better)" if result["test"] else f"\n95% confidence intervals from {result['samples']:,} bootstrap "
            "resamples (TER: lower is better)")
    return header + "\n".join(rows) + note + "\n" + "\n".join(f"  {k}: {s}" for k, s in result["signature"].items())

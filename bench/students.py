"""Teachers and students side by side (``make students-bench``): quality, speed, size and memory of each arm.

    python -m bench.students --split test_2016_flickr --lines 10000 \\
        --arm "teacher beam 5=runs/multi30k-en-de:5" --arm "student greedy=runs/student:1" [--out F.json]

An arm is ``NAME=RUN:BEAM``, ``NAME=RUN+RUN2...:BEAM`` (an ensemble) or ``NAME=RUN:BEAM:decode.k=v,decode.k=v``
(decoding settings, e.g. ``decode.lexical_shortlist=true``). For each: BLEU and chrF on the split (and the
paired bootstrap against the first arm),
decode-only sentences/s (the split's sources through one ``Translator``, after a warm-up), the whole-process time
of `mt translate` on ``--lines`` lines (the split's sources repeated, so start-up does not dominate) with its peak
resident memory, and the size of the model as `mt export` writes it. Speed is measured in rounds, every arm once
per round, and the best round counts. A plot of BLEU against decode-only sentences/s goes beside ``--out``, and
each arm's translations in ``OUT.hyps/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.process import timed_translate
from eval.scoring import compare
from mt.decode.translator import Translator
from mt.model_file import export_model
from mt.run import RunDir

__all__ = ["main"]

WARMUP = 50


@dataclass
class Arm:
    name: str
    runs: list[Path]  # the model, then the other members of an ensemble
    beam: int
    overrides: list[str]  # decode.key=value


def _arm(spec: str) -> Arm:
    name, _, rest = spec.partition("=")
    runs, _, rest = rest.partition(":")
    beam, _, overrides = rest.partition(":")
    if not (name and runs and beam.isdigit()):
        raise SystemExit(f"error: --arm {spec!r}: write NAME=RUN[+RUN2...]:BEAM[:decode.key=value,...]")
    return Arm(name, [Path(r) for r in runs.split("+")], int(beam), [o for o in overrides.split(",") if o])


def _decode(arm: Arm, sources: list[str]) -> tuple[float, list[str]]:
    translator = Translator.from_run(arm.runs[0], ensemble=[str(r) for r in arm.runs[1:]])
    translator.set_decoding(arm.overrides)
    translator.translate(sources[:WARMUP], beam=arm.beam)
    start = time.perf_counter()
    hyps = translator.translate(sources, beam=arm.beam)
    return len(sources) / (time.perf_counter() - start), hyps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.students", description=__doc__.split("\n")[0])
    p.add_argument("--arm", action="append", required=True, help="NAME=RUN:BEAM (the first is the baseline)")
    p.add_argument("--split", default="test_2016_flickr")
    p.add_argument("--lines", type=int, default=10000, help="lines of the whole-process input")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args(argv)
    arms = [_arm(a) for a in args.arm]
    sources, references = (list(x) for x in RunDir.of(arms[0].runs[0]).split_texts(args.split))
    rows = {a.name: {"arm": a.name, "run": "+".join(map(str, a.runs)), "beam": a.beam, "decode": a.overrides}
            for a in arms}
    hyps = {}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "input.txt"
        big.write_text("".join(sources[i % len(sources)] + "\n" for i in range(args.lines)), encoding="utf-8")
        for a in arms:
            sizes = [export_model(RunDir.of(run), Path(tmp) / "m.mt")["bytes"] for run in a.runs]
            rows[a.name]["model_mb"] = round(sum(sizes) / 1e6, 1)
        for _ in range(args.rounds):
            for a in arms:
                rate, hyps[a.name] = _decode(a, sources)
                seconds, peak = timed_translate(a.runs[0], big, beam=a.beam, ensemble=a.runs[1:], overrides=a.overrides)
                row = rows[a.name]
                row["decode_sentences_per_s"] = max(row.get("decode_sentences_per_s", 0), round(rate, 1))
                row["translate_s"] = min(row.get("translate_s", 1e9), round(seconds, 1))
                row["peak_mib"] = max(row.get("peak_mib", 0), round(peak))
                print(json.dumps({"arm": a.name, "decode_sentences_per_s": round(rate, 1),
                                  "translate_s": round(seconds, 1)}), flush=True)
    tgt = RunDir.of(arms[0].runs[0]).meta()["tgt"]
    result = compare([(a.name, hyps[a.name]) for a in arms], references, tgt)
    for system in result["systems"]:
        row = rows[system["name"]]
        for metric in ("bleu", "chrf"):
            row[metric] = system[metric]["score"]
            if "p_value" in system[metric]:
                row[f"{metric}_p"] = system[metric]["p_value"]
        row["lines_per_s_translate"] = round(args.lines / row["translate_s"], 1)
    table = list(rows.values())
    for row in table:
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps({"split": args.split, "lines": args.lines, "rows": table,
                                              "signature": result["signature"]}, indent=1) + "\n", encoding="utf-8")
        _plot(table, Path(args.out).with_suffix(".png"))
        folder = Path(args.out).with_suffix(".hyps")  # each arm's translations, for `mt score --hyp A B --ref R`
        folder.mkdir(exist_ok=True)
        for a in arms:
            slug = "".join(c if c.isalnum() else "-" for c in a.name).strip("-")
            (folder / f"{slug}.txt").write_text("".join(h + "\n" for h in hyps[a.name]), encoding="utf-8")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    placed: list[tuple[float, float]] = []  # labelled points: a label near another's goes one line lower
    for row in sorted(rows, key=lambda r: -r["bleu"]):
        x, y = row["decode_sentences_per_s"], row["bleu"]
        near = sum(abs(y - py) < 0.15 and max(x, px) / min(x, px) < 1.4 for px, py in placed)
        placed.append((x, y))
        ax.scatter(x, y, s=30)
        ax.annotate(row["arm"], (x, y), textcoords="offset points", xytext=(12 if near else 5, 4 - 11 * near),
                    fontsize=8, arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if near else None)
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.08)  # room for the labels of the fastest and best arms
    ax.set_xlabel("decode-only sentences/s (log scale)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())

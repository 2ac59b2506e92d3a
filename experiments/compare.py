"""Finished runs side by side: the tables of docs/results.md's recipe sections, from the runs' own files.

    python -m experiments.compare runs/multi30k-en-de runs/m30-ls02 [--out runs/compare]
    make compare RUNS="runs/multi30k-en-de runs/m30-ls02"

The first run is the reference; every other run is named by how its config differs from it (e.g.
``train.label_smoothing=0.2``). Per run, from RUN/train_log.jsonl: minutes, epochs, updates, median target
tokens/s, the best greedy validation BLEU and its epoch; from checkpoints/final.pt: which model training kept;
from RUN/eval/val.json (``mt eval --run RUN --split val``): BLEU and chrF with the run's beam. Then greedy
validation BLEU after each epoch (the same data seen, whatever the machine's speed) and at how many of the epochs
both runs have each run is behind the reference. Validation split only: test results play no part.
Speeds compare only between runs on the same machine at the same time; the table shows what each log says.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.sweep import plot_settings, summarise
from mt.checkpoint import load_checkpoint
from mt.config import config_to_dict
from mt.errors import MTError
from mt.files import atomic_write
from mt.run import RunDir

__all__ = ["config_differences", "compare", "main"]


def _dotted(run: RunDir) -> dict:
    """{"section.key": value} of the run's config (sections hold plain values)."""
    return {f"{section}.{key}": value for section, keys in config_to_dict(run.config()).items()
            for key, value in keys.items()}


def config_differences(reference: RunDir, run: RunDir) -> list[str]:
    """The overrides that turn the reference run's config into ``run``'s, e.g. ["train.seed=43"]."""
    ref, cfg = _dotted(reference), _dotted(run)
    return [f"{key}={cfg[key]}" for key in cfg if cfg[key] != ref.get(key)]


def _row(reference: RunDir, run: RunDir) -> dict:
    row = {"run": str(run.root), "setting": " ".join(config_differences(reference, run)) or "reference",
           **summarise(run.root)}
    final = run.checkpoint_dir / "final.pt"
    row["final"] = load_checkpoint(final).get("final") if final.is_file() else None
    report = run.root / "eval" / "val.json"
    row["beam_val"] = None
    if report.is_file():
        r = json.loads(report.read_text(encoding="utf-8"))
        row["beam_val"] = {"beam": r["beam"], "bleu": r["bleu"], "chrf": r["chrf"]}
    return row


def _final_cell(final: dict | None) -> str:
    if not final:
        return "best.pt (no final choice)"
    scores, chosen = final["val_bleu"], final["chosen"]
    name = {"best": "best.pt", "averaged": "average"}
    others = [f"{name[k]} {v:.2f}" for k, v in scores.items() if k != chosen]
    return f"{name[chosen]} {scores[chosen]:.2f}" + (f" vs {', '.join(others)}" if others else "")


def _tables(rows: list[dict]) -> str:
    lines = ["| run | setting | minutes | epochs | updates | target tok/s | best greedy val BLEU (epoch) | final model "
             "(greedy val BLEU) | val BLEU / chrF with beam |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        beam = r["beam_val"]
        beam_cell = f"{beam['bleu']:.2f} / {beam['chrf']:.2f} (beam {beam['beam']})" if beam else "– (mt eval --split val)"
        best = "–" if r["val_bleu"] is None else f"{r['val_bleu']:.2f} ({r['best_epoch']})"
        cells = [r["run"], r["setting"], r["minutes"], r["epochs"], r["updates"], r["tokens_per_s"] or "–", best,
                 _final_cell(r["final"]), beam_cell]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    reference = rows[0]["by_epoch"]
    columns = [(Path(r["run"]).name, r["by_epoch"]) for r in rows]
    lines += ["", "Greedy validation BLEU after each epoch:", "",
              "| epoch | " + " | ".join(name for name, _ in columns) + " |",
              "| --- |" + " --- |" * len(columns)]
    for epoch in range(1, max(len(curve) for _, curve in columns) + 1):
        cells = [f"{curve[epoch - 1]:.2f}" if epoch <= len(curve) else "–" for _, curve in columns]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    if columns[1:]:
        behind = [sum(b < a for a, b in zip(reference, curve)) for _, curve in columns[1:]]
        common = [min(len(reference), len(curve)) for _, curve in columns[1:]]
        lines.append("| behind the reference at | – | " + " | ".join(f"{n} of {c}" for n, c in zip(behind, common)) + " |")
    return "\n".join(lines) + "\n"


def compare(runs: list[str]) -> tuple[list[dict], str]:
    """Rows (one per run, the first the reference) and the markdown tables."""
    dirs = [RunDir.of(r) for r in runs]
    for d in dirs:
        if not (d.root / "train_log.jsonl").is_file():
            raise MTError(f"{d.root} has no train_log.jsonl: not a trained run")
    rows = [_row(dirs[0], d) for d in dirs]
    return rows, _tables(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="trained run folders; the first is the reference")
    p.add_argument("--out", help="also write OUT/compare.md, compare.json and compare.png (BLEU by minute and epoch)")
    args = p.parse_args(argv)
    try:
        rows, tables = compare(args.runs)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(tables, end="", flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "compare.md", tables)
        atomic_write(out / "compare.json", json.dumps(rows, indent=1) + "\n")
        plot_settings([{**r, "setting": Path(r["run"]).name} for r in rows], out / "compare.png",
                      highlight=Path(rows[0]["run"]).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does language-model pre-training help when parallel data is scarce? (``make transfer-experiment``)

For each size N (default 3,000 and 10,000 pairs) a low-resource pair is simulated from a parallel corpus:
the first N pairs of a seeded shuffle of its training split are the parallel data (so the 3,000 are part of
the 10,000); the other training sentences serve as monolingual text, each side alone, never as pairs.

    1. mt prepare   the N pairs (tokenizer trained on them only) + the corpus's val and test splits
    2. mt pretrain  a target-side LM and a source-side LM on that side of the N pairs + the monolingual rest
    3. mt train     the translator twice with the same budget (epochs): from scratch, and with
                    model.init_encoder_from / model.init_decoder_from set to the two LMs
    4. mt eval      on the test split; the table goes to OUT/results.{json,md} and a plot to OUT/transfer.png

Every step skips work already done (and `mt train`/`mt pretrain` resume), so an interrupted experiment
continues where it stopped when re-run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from mt.files import atomic_write, read_jsonl
from mt.text import read_lines

__all__ = ["main"]


def _mt(*args: str) -> None:
    print("+ mt " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "mt", *args], check=True)


def find_split(folder: Path, name: str, lang: str) -> Path:
    for candidate in (folder / f"{name}.{lang}", folder / f"{name}.{lang}.gz"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"error: {folder} has no {name}.{lang}[.gz]")


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def make_subset(data_dir: Path, out: Path, src: str, tgt: str, size: int, test: str, seed: int) -> None:
    """out/corpus/{train,val,TEST}.{src,tgt} with `size` training pairs; out/mono.{src,tgt} with the rest."""
    corpus = out / "corpus"
    if (out / f"mono.{tgt}").is_file():
        return
    corpus.mkdir(parents=True, exist_ok=True)
    train = {lang: read_lines(find_split(data_dir, "train", lang))[0] for lang in (src, tgt)}
    order = list(range(len(train[src])))
    random.Random(seed).shuffle(order)
    if size >= len(order):
        raise SystemExit(f"error: {size} pairs asked for but the corpus has {len(order)}")
    for lang in (src, tgt):
        write_lines(corpus / f"train.{lang}", [train[lang][i] for i in order[:size]])
        write_lines(out / f"mono.{lang}", [train[lang][i] for i in order[size:]])
        for split in ("val", test):
            write_lines(corpus / f"{split}.{lang}", read_lines(find_split(data_dir, split, lang))[0])


def run_size(args: argparse.Namespace, size: int) -> dict:
    out = Path(args.out) / f"{size}"
    make_subset(Path(args.data_dir), out, args.src, args.tgt, size, args.split, args.seed)
    prepared = out / "prepared"
    if not (prepared / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(prepared), "--data-dir", str(out / "corpus"), "--src", args.src, "--tgt", args.tgt,
            "--config", args.config)
    epochs = args.epochs[min(args.pairs.index(size), len(args.epochs) - 1)]
    # both arms separate source and target embeddings: the pretrained arm loads a language model into each side
    budget = [f"train.max_epochs={epochs}", "train.max_minutes=0", f"train.patience={epochs}", "train.keep_checkpoints=0",
              f"train.threads={args.threads}", "model.share_embeddings=false", *args.train_overrides]
    lm_budget = [f"train.max_epochs={args.lm_epochs}", "train.max_minutes=0", f"train.threads={args.threads}"]
    lms = {}
    for side, lang in (("tgt", args.tgt), ("src", args.src)):
        lm_run = out / f"lm-{side}"
        _mt("pretrain", "--run", str(lm_run), "--from-run", str(prepared), "--side", side,
            "--text", str(out / f"mono.{lang}"), *lm_budget)
        lms[side] = lm_run / "checkpoints" / "best.pt"
    arms = {"scratch": [], "pretrained": [f"model.init_encoder_from={lms['src']}",
                                          f"model.init_decoder_from={lms['tgt']}"]}
    result = {"pairs": size, "monolingual_sentences": len(read_lines(out / f"mono.{args.tgt}")[0]),
              "epochs": epochs, "lm_epochs": args.lm_epochs, "train_overrides": args.train_overrides}
    for arm, extra in arms.items():
        run = out / arm
        if not run.exists():
            shutil.copytree(prepared, run, ignore=shutil.ignore_patterns("checkpoints", "train_log.jsonl", "plots"))
        _mt("train", "--run", str(run), "--config", args.config, *budget, *extra)
        report_path = run / "eval" / f"{args.split}.json"
        if not report_path.is_file():
            _mt("eval", "--run", str(run), "--split", args.split)
        report = json.loads(report_path.read_text())
        valid = read_jsonl(run / "train_log.jsonl", "valid")
        result[arm] = {"test_bleu": report["bleu"], "test_chrf": report["chrf"],
                       "best_val_bleu": max(r["val_bleu"] for r in valid),
                       "val_bleu_by_epoch": [round(r["val_bleu"], 2) for r in valid],
                       "train_minutes": round(valid[-1]["minutes"], 1), "signature": report["signature"]["bleu"]}
    for side in ("src", "tgt"):
        valid = read_jsonl(out / f"lm-{side}" / "train_log.jsonl", "valid")
        result[f"lm_{side}_val_ppl"] = round(min(r["val_ppl"] for r in valid), 2)
    return result


def report(results: list[dict], out: Path, split: str) -> None:
    lines = [f"| parallel pairs | monolingual sentences | LM val ppl (src / tgt) | {split} BLEU scratch | "
             f"{split} BLEU pre-trained | gain | best val BLEU scratch / pre-trained |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s, p = r["scratch"], r["pretrained"]
        lines.append(f"| {r['pairs']:,} | {r['monolingual_sentences']:,} | {r['lm_src_val_ppl']} / {r['lm_tgt_val_ppl']} "
                     f"| {s['test_bleu']:.2f} | {p['test_bleu']:.2f} | {p['test_bleu'] - s['test_bleu']:+.2f} "
                     f"| {s['best_val_bleu']:.2f} / {p['best_val_bleu']:.2f} |")
    atomic_write(out / "results.md", "\n".join(lines) + "\n")
    atomic_write(out / "results.json", json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['pairs']:,} pairs" for r in results]
    xs = range(len(results))
    for offset, arm, color in ((-0.2, "scratch", "tab:gray"), (0.2, "pretrained", "tab:blue")):
        bars = axes[0].bar([x + offset for x in xs], [r[arm]["test_bleu"] for r in results], 0.4,
                           label="from scratch" if arm == "scratch" else "LM pre-trained", color=color)
        axes[0].bar_label(bars, fmt="%.1f")
    axes[0].set_xticks(list(xs), labels)
    axes[0].set_ylabel(f"{split} BLEU (beam)")
    axes[0].legend()
    for r in results:
        for arm, style in (("scratch", "--"), ("pretrained", "-")):
            curve = r[arm]["val_bleu_by_epoch"]
            axes[1].plot(range(1, len(curve) + 1), curve, style, label=f"{r['pairs']:,} {arm}")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation BLEU (greedy)")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=90)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and {out / 'transfer.png'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/multi30k", help="folder with train/val/TEST .L[.gz] files")
    p.add_argument("--src", default="en")
    p.add_argument("--tgt", default="de")
    p.add_argument("--split", default="test_2016_flickr", help="test split to report")
    p.add_argument("--pairs", type=int, nargs="+", default=[3000, 10000], help="parallel training pairs per setting")
    p.add_argument("--config", default="configs/multi30k_en_de.yaml", help="translator config (LMs match it)")
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 12],
                   help="translator training budget per --pairs entry (the last one repeats), the same for both arms")
    p.add_argument("--lm-epochs", type=int, default=3, help="language-model pre-training epochs")
    p.add_argument("--seed", type=int, default=1, help="seed of the subset selection")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per training process (0 = all)")
    # The default config is made for 29k pairs (about 120 updates an epoch). On a few thousand pairs its
    # 4,000-token batches give 15 updates an epoch, and plateau decay after one flat validation starves the
    # learning rate before anything is learned; smaller batches and more patience suit the small data.
    # Both arms use the same settings, and they were not tuned on the test split.
    p.add_argument("--train-overrides", nargs="*", default=["train.batch_tokens=1500", "train.lr_patience=3",
                                                             "train.val_max_sentences=500"],
                   help="key=value settings for both translators of every size")
    p.add_argument("--out", default="runs/transfer", help="where the runs and the results go")
    args = p.parse_args(argv)
    results = [run_size(args, n) for n in args.pairs]
    report(results, Path(args.out), args.split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What helps when parallel data is scarce? (``make transfer-experiment``)

For each size N (default 3,000 and 10,000 pairs) a low-resource pair is simulated from a parallel corpus:
the first N pairs of a seeded shuffle of its training split are the parallel data (so the 3,000 are part of
the 10,000); the other training sentences serve as monolingual text, each side alone, never as pairs.
Each arm trains the same translator (the recipe plus ``--train-overrides``) with the same budget:

    scratch      from a fresh initialisation, the tokenizer trained on the N pairs
    pretrained   the encoder and decoder start from language models (``mt pretrain``) of each side's text:
                 that side of the N pairs plus the monolingual rest
    parent       starts from a parent model of another pair (``--parent-tgt``, e.g. en->fr on the whole
                 training split; Zoph et al. 2016, Kocmi & Bojar 2018): ``mt train --init-from PARENT``, both
                 with one joint tokenizer trained on the source, target and parent-target text
    backtrans    a reverse model (tgt->src) trained on the N pairs samples translations of the monolingual
                 target text (``mt translate --sample``); those pairs join the N pairs, tagged
                 (``mt prepare --back-translations ... --tag-back-translations``)

Budgets: ``--minutes`` (equal minutes per arm: what a user compares; the default) or ``--epochs`` (equal passes
over the N pairs; the first version of this experiment). The time of the language models, the parent and the reverse
model comes on top and is reported. ``mt eval`` scores each final model on the test split once, at the end.
Every step skips work already done (and ``mt train``/``mt pretrain`` resume), so an interrupted experiment
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

ARMS = ("scratch", "pretrained", "parent", "backtrans")
LABELS = {"scratch": "from scratch", "pretrained": "LM pre-trained", "parent": "parent model",
          "backtrans": "back-translation"}
COLORS = {"scratch": "tab:gray", "pretrained": "tab:blue", "parent": "tab:green", "backtrans": "tab:red"}


def _mt(*args: str) -> None:
    print("+ mt " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "mt", *args], check=True)


def _find_split(folder: Path, name: str, lang: str) -> Path:
    for candidate in (folder / f"{name}.{lang}", folder / f"{name}.{lang}.gz"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"error: {folder} has no {name}.{lang}[.gz]")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def make_subset(data_dir: Path, out: Path, src: str, tgt: str, size: int, test: str, seed: int) -> None:
    """out/corpus/{train,val,TEST}.{src,tgt} with `size` training pairs; out/mono.{src,tgt} with the rest."""
    corpus = out / "corpus"
    if (out / f"mono.{tgt}").is_file():
        return
    corpus.mkdir(parents=True, exist_ok=True)
    train = {lang: read_lines(_find_split(data_dir, "train", lang))[0] for lang in (src, tgt)}
    order = list(range(len(train[src])))
    random.Random(seed).shuffle(order)
    if size >= len(order):
        raise SystemExit(f"error: {size} pairs asked for but the corpus has {len(order)}")
    for lang in (src, tgt):
        _write_lines(corpus / f"train.{lang}", [train[lang][i] for i in order[:size]])
        _write_lines(out / f"mono.{lang}", [train[lang][i] for i in order[size:]])
        for split in ("val", test):
            _write_lines(corpus / f"{split}.{lang}", read_lines(_find_split(data_dir, split, lang))[0])


def budget(args: argparse.Namespace, index: int) -> list[str]:
    """The translator's settings of the index-th size, the same for every arm."""
    if args.epochs:
        epochs = args.epochs[min(index, len(args.epochs) - 1)]
        limit = [f"train.max_epochs={epochs}", "train.max_minutes=0", f"train.patience={epochs}"]
    else:
        minutes = args.minutes[min(index, len(args.minutes) - 1)]
        limit = [f"train.max_minutes={minutes:g}", "train.max_epochs=100000", "train.patience=100000"]
    # every arm has separate source and target embeddings: the pretrained arm loads a language model into each
    return [*limit, "train.keep_checkpoints=0", f"train.threads={args.threads}", "model.share_embeddings=false",
            *args.train_overrides]


def fresh_copy(prepared: Path, run: Path) -> Path:
    if not run.exists():
        shutil.copytree(prepared, run, ignore=shutil.ignore_patterns("checkpoints", "train_log.jsonl", "plots"))
    return run


def train_and_score(run: Path, settings: list[str], split: str, *options: str) -> dict:
    """mt train (resumes an interrupted run) and mt eval on the test split -> the arm's figures. An arm already
    scored is not trained again: a run stopped by its minutes resumes into the room it kept for a last validation."""
    report_path = run / "eval" / f"{split}.json"
    if not report_path.is_file():
        _mt("train", "--run", str(run), *options, *settings)
        _mt("eval", "--run", str(run), "--split", split)
    report = json.loads(report_path.read_text())
    valid = validations(run)
    return {"test_bleu": report["bleu"], "test_chrf": report["chrf"],
            "best_val_bleu": max(r["val_bleu"] for r in valid),
            "val_bleu_curve": [[round(r["minutes"], 2), r["epoch"], round(r["val_bleu"], 2)] for r in valid],
            "train_minutes": minutes_of(valid), "signature": report["signature"]["bleu"]}


def minutes_of(valid: list[dict]) -> float:
    """A run's training minutes from its validation records."""
    return round(valid[-1]["minutes"], 1) if valid else 0.0


def validations(run: Path) -> list[dict]:
    return read_jsonl(run / "train_log.jsonl", "valid")


def pretrained_arm(args: argparse.Namespace, out: Path, prepared: Path, settings: list[str]) -> dict:
    lm_settings = [f"train.max_epochs={args.lm_epochs}", "train.max_minutes=0", f"train.threads={args.threads}"]
    lms = {}
    for side, lang in (("tgt", args.tgt), ("src", args.src)):
        lm_run = out / f"lm-{side}"
        _mt("pretrain", "--run", str(lm_run), "--from-run", str(prepared), "--side", side,
            "--text", str(out / f"mono.{lang}"), *lm_settings)
        lms[side] = lm_run / "checkpoints" / "best.pt"
    run = fresh_copy(prepared, out / "pretrained")
    result = train_and_score(run, [*settings, f"model.init_encoder_from={lms['src']}",
                                   f"model.init_decoder_from={lms['tgt']}"], args.split)
    lm_logs = {side: validations(out / f"lm-{side}") for side in ("src", "tgt")}
    for side, valid in lm_logs.items():
        result[f"lm_{side}_val_ppl"] = round(min(r["val_ppl"] for r in valid), 2)
    result["extra_minutes"] = round(sum(minutes_of(valid) for valid in lm_logs.values()), 1)
    return result


def shared_tokenizer(args: argparse.Namespace, root: Path) -> Path:
    """A prepared run whose joint tokenizer was trained on the whole training split's source, target and
    parent-target text (its English twice, paired once with each other language); only its tokenizer is used."""
    vocab = root / "shared-tokenizer"
    if (vocab / "data" / "meta.json").is_file():
        return vocab
    data_dir, corpus = Path(args.data_dir), root / "shared-tokenizer-text"
    corpus.mkdir(parents=True, exist_ok=True)
    text = {lang: read_lines(_find_split(data_dir, "train", lang))[0] for lang in (args.src, args.tgt, args.parent_tgt)}
    _write_lines(corpus / f"train.{args.src}", text[args.src] * 2)
    _write_lines(corpus / f"train.{args.tgt}", text[args.tgt] + text[args.parent_tgt])
    for lang in (args.src, args.tgt):
        _write_lines(corpus / f"val.{lang}", read_lines(_find_split(data_dir, "val", lang))[0])
    _mt("prepare", "--run", str(vocab), "--data-dir", str(corpus), "--src", args.src, "--tgt", args.tgt)
    return vocab


def parent_model(args: argparse.Namespace, root: Path, vocab: Path, settings: list[str]) -> Path:
    """src->parent_tgt on the whole training split with the shared tokenizer, once for every size."""
    parent = root / f"parent-{args.src}-{args.parent_tgt}"
    if not (parent / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(parent), "--data-dir", args.data_dir, "--src", args.src, "--tgt",
            args.parent_tgt, "--tokenizer-from", str(vocab))
    limit = [x for x in settings if not x.startswith(("train.max_minutes", "train.max_epochs", "train.patience"))]
    if not (parent / "checkpoints" / "final.pt").is_file():
        _mt("train", "--run", str(parent), *limit, f"train.max_minutes={args.parent_minutes:g}")
    return parent


def parent_arm(args: argparse.Namespace, out: Path, settings: list[str]) -> dict:
    root = Path(args.out)
    vocab = shared_tokenizer(args, root)
    parent = parent_model(args, root, vocab, settings)
    run = out / "parent"
    if not (run / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(run), "--data-dir", str(out / "corpus"), "--src", args.src, "--tgt", args.tgt,
            "--tokenizer-from", str(vocab))
    result = train_and_score(run, settings, args.split, "--init-from", str(parent))
    result["extra_minutes"] = minutes_of(validations(parent))
    return result


def backtrans_arm(args: argparse.Namespace, out: Path, prepared: Path, settings: list[str]) -> dict:
    reverse = out / "reverse"
    if not (reverse / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(reverse), "--data-dir", str(out / "corpus"), "--src", args.tgt, "--tgt",
            args.src, "--tokenizer-from", str(prepared))
    synthetic = out / f"backtrans.{args.src}"
    if not synthetic.is_file():
        _mt("train", "--run", str(reverse), *settings)
        _mt("translate", "--run", str(reverse), "--input", str(out / f"mono.{args.tgt}"), "--output", str(synthetic),
            "--sample", "--seed", str(args.seed), *([f"--threads={args.threads}"] if args.threads else []))
    run = out / "backtrans"
    if not (run / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(run), "--data-dir", str(out / "corpus"), "--src", args.src, "--tgt", args.tgt,
            "--tokenizer-from", str(prepared), "--back-translations", str(synthetic), str(out / f"mono.{args.tgt}"),
            "--tag-back-translations")
    result = train_and_score(run, settings, args.split)
    stats = json.loads((run / "data" / "stats.json").read_text())
    result["synthetic_pairs"] = stats["back_translations"]["kept_pairs"]
    result["extra_minutes"] = minutes_of(validations(reverse))
    return result


def run_size(args: argparse.Namespace, size: int) -> dict:
    out = Path(args.out) / f"{size}"
    make_subset(Path(args.data_dir), out, args.src, args.tgt, size, args.split, args.seed)
    prepared = out / "prepared"
    if not (prepared / "data" / "meta.json").is_file():
        _mt("prepare", "--run", str(prepared), "--data-dir", str(out / "corpus"), "--src", args.src, "--tgt", args.tgt)
    settings = budget(args, args.pairs.index(size))
    result = {"pairs": size, "monolingual_sentences": len(read_lines(out / f"mono.{args.tgt}")[0]),
              "budget": settings[0], "lm_epochs": args.lm_epochs, "train_overrides": args.train_overrides}
    for arm in args.arms:
        if arm == "scratch":
            result[arm] = train_and_score(fresh_copy(prepared, out / "scratch"), settings, args.split)
        elif arm == "pretrained":
            result[arm] = pretrained_arm(args, out, prepared, settings)
        elif arm == "parent":
            result[arm] = parent_arm(args, out, settings)
        else:
            result[arm] = backtrans_arm(args, out, prepared, settings)
    return result


def table(results: list[dict], arms: list[str], split: str) -> list[str]:
    lines = ["| parallel pairs | monolingual sentences | budget | "
             + " | ".join(f"{LABELS[a]}: {split} BLEU (best val)" for a in arms) + " |",
             "|---|---|---|" + "---|" * len(arms)]
    for r in results:
        cells = []
        for arm in arms:
            a = r[arm]
            gain = "" if arm == "scratch" or "scratch" not in r else f" {a['test_bleu'] - r['scratch']['test_bleu']:+.2f}"
            cells.append(f"{a['test_bleu']:.2f}{gain} ({a['best_val_bleu']:.2f})")
        lines.append(f"| {r['pairs']:,} | {r['monolingual_sentences']:,} | {r['budget']} | " + " | ".join(cells) + " |")
    return lines


def report(results: list[dict], arms: list[str], out: Path, split: str) -> None:
    lines = table(results, arms, split)
    atomic_write(out / "results.md", "\n".join(lines) + "\n")
    atomic_write(out / "results.json", json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        xs = [i + (k - (len(arms) - 1) / 2) * width for i in range(len(results))]
        bars = axes[0].bar(xs, [r[arm]["test_bleu"] for r in results], width, label=LABELS[arm], color=COLORS[arm])
        axes[0].bar_label(bars, fmt="%.1f", fontsize=8)
    axes[0].set_xticks(range(len(results)), [f"{r['pairs']:,} pairs" for r in results])
    axes[0].set_ylabel(f"{split} BLEU (beam)")
    axes[0].legend(fontsize=8)
    by_minutes = results[0]["budget"].startswith("train.max_minutes")
    for r, style in zip(results, ("--", "-", "-.", ":")):
        for arm in arms:
            curve = r[arm]["val_bleu_curve"]
            axes[1].plot([p[0] if by_minutes else p[1] for p in curve], [p[2] for p in curve], style, marker=".",
                         color=COLORS[arm], label=f"{r['pairs']:,} {LABELS[arm]}")
    axes[1].set_xlabel("minutes of training" if by_minutes else "epoch")
    axes[1].set_ylabel("validation BLEU (greedy)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=90)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and {out / 'transfer.png'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/multi30k", help="folder with train/val/TEST .L[.gz] files")
    p.add_argument("--src", default="en")
    p.add_argument("--tgt", default="de")
    p.add_argument("--split", default="test_2016_flickr", help="test split to report")
    p.add_argument("--pairs", type=int, nargs="+", default=[3000, 10000], help="parallel training pairs per setting")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which arms to run")
    p.add_argument("--minutes", type=float, nargs="+", default=[6, 8],
                   help="training minutes per --pairs entry (the last one repeats), the same for every arm")
    p.add_argument("--epochs", type=int, nargs="+", default=[],
                   help="instead of --minutes: epochs per --pairs entry (the last one repeats), the same for every arm")
    p.add_argument("--lm-epochs", type=int, default=3, help="language-model pre-training epochs")
    p.add_argument("--parent-tgt", default="fr", help="target language of the parent model (same source)")
    p.add_argument("--parent-minutes", type=float, default=15, help="training minutes of the parent model")
    p.add_argument("--seed", type=int, default=1, help="seed of the subset selection and of the sampling")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per training process (0 = all)")
    # The recipe is made for 29k pairs (about 120 updates an epoch). On a few thousand pairs its 4,000-token
    # batches give 15 updates an epoch, and plateau decay after one flat validation starves the learning rate
    # before anything is learned; smaller batches and more patience suit the small data. Every arm uses the same
    # settings, and they were not tuned on the test split.
    p.add_argument("--train-overrides", nargs="*", default=["train.batch_tokens=1500", "train.lr_patience=3",
                                                             "train.val_max_sentences=500"],
                   help="key=value settings for every translator of every size")
    p.add_argument("--out", default="runs/transfer", help="where the runs and the results go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [run_size(args, n) for n in args.pairs]
    report(results, [a for a in ARMS if a in args.arms], Path(args.out), args.split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which settings train best within a fixed time? (``make sweep``) The experiment table, on validation only.

Each setting is a group of config overrides, e.g. ``"model.dropout=0.4 train.label_smoothing=0.2"``. Next to
the baseline (the BASE run's config unchanged), every setting gets its own run folder OUT/NAME, trained for the
same wall-clock budget on a copy of BASE's prepared data, or, for a setting that changes ``data.*`` keys (e.g. a
vocabulary size, which re-trains the tokenizer), on the same corpus prepared again. Settings are compared by
their best greedy validation BLEU: test splits play no part.

    python -m experiments.sweep --base runs/multi30k-en-de --minutes 15 --out runs/sweep \\
        "model.dropout=0.2" "model.dropout=0.4" "train.label_smoothing=0" "data.vocab_size=16000"

Writes OUT/sweep.md (the table), OUT/sweep.json and OUT/sweep.png (validation BLEU against minutes). A setting
already trained is not trained again (``mt train`` resumes and finds its budget spent), so an interrupted sweep
continues where it stopped when re-run. Ctrl-C lets the running setting save its checkpoint, then stops.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from mt.config import Config, apply_overrides, config_to_dict, save_config
from mt.errors import MTError
from mt.files import atomic_write, read_jsonl
from mt.plots import save_figure
from mt.run import RunDir

__all__ = ["main", "plot_settings", "summarise", "setting_name"]

BASELINE = "baseline"


def setting_name(overrides: list[str]) -> str:
    """["model.dropout=0.4", "train.lr=1e-3"] -> "dropout-0.4_lr-1e-3": a readable folder name."""
    if not overrides:
        return BASELINE
    parts = [re.sub(r"[^A-Za-z0-9.+-]", "-", o.split(".", 1)[-1].replace("=", "-")) for o in overrides]
    return "_".join(parts)


def _mt(*args: str) -> int:
    """Run `mt ARGS` in a child process -> its exit status, or 130 when Ctrl-C was pressed meanwhile. The child
    gets the same Ctrl-C and stops after its current step with a complete checkpoint; we wait for that."""
    print("+ mt " + " ".join(args), flush=True)
    child = subprocess.Popen([sys.executable, "-m", "mt", *args])
    interrupted = False
    while True:
        try:
            code = child.wait()
            return 130 if interrupted else code
        except KeyboardInterrupt:
            interrupted = True


def _prepare(base: RunDir, base_cfg: Config, meta: dict, run: Path, overrides: list[str]) -> int:
    """Prepare RUN for a setting -> an exit status. A setting that changes no data.* key trains on a copy of the
    base run's prepared data (preparing a large corpus again would cost as much as a short training); one that
    does is prepared from the same corpus by `mt prepare`."""
    cfg = apply_overrides(base_cfg, overrides)
    if config_to_dict(cfg)["data"] != config_to_dict(base_cfg)["data"]:
        return _mt("prepare", "--run", str(run), "--config", str(base.config_path), "--src", meta["src"],
                   "--tgt", meta["tgt"], *_source_args(meta), *overrides)
    target = RunDir.of(run)
    if not target.data_dir.is_dir():
        partial = run / ".data.partial"  # renamed when complete: an interrupted copy is never taken for data
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(base.data_dir, partial)
        partial.rename(target.data_dir)
        print(f"+ {target.data_dir}: a copy of {base.data_dir} (the setting changes no data.* key)", flush=True)
    if not target.config_path.is_file():
        save_config(cfg, target.config_path)
    return 0


def _source_args(meta: dict) -> list[str]:
    origin = meta["origin"]
    if origin.startswith("hub:"):
        name, _, config = origin[len("hub:"):].partition(":")
        return ["--hf-dataset", name] + (["--hf-config", config] if config else [])
    return ["--data-dir", origin]


def summarise(run: Path) -> dict:
    """One table row from RUN/train_log.jsonl: budget used, speed and the best validation BLEU."""
    log = run / "train_log.jsonl"
    valid = read_jsonl(log, "valid")
    rates = [r["tokens_per_s"] for r in read_jsonl(log, "train") if r.get("step", 0) > 1]
    if not valid:
        return {"minutes": 0.0, "epochs": 0, "updates": 0, "tokens_per_s": None, "val_bleu": None, "at_minutes": None,
                "best_epoch": None, "val_loss": None, "curve": [], "by_epoch": []}
    best, best_epoch, by_epoch = _best_and_by_epoch(valid, "val_bleu")
    return {
        "minutes": round(valid[-1]["minutes"], 1), "epochs": valid[-1]["epoch"], "updates": valid[-1]["step"],
        "tokens_per_s": round(statistics.median(rates)) if rates else None,
        "val_bleu": round(best["val_bleu"], 2), "at_minutes": round(best["minutes"], 1),
        "best_epoch": best_epoch, "val_loss": round(best["val_loss"], 3),
        "curve": [(round(r["minutes"], 2), round(r["val_bleu"], 2)) for r in valid],
        "by_epoch": by_epoch,
    }


def _best_and_by_epoch(valid: list[dict], key: str) -> tuple[dict, str, list[float]]:
    """The validation record with the best ``key``, its epoch ("N+" when it came mid-epoch, after N epochs: the
    budget's last validation, or validate_every) and ``key`` after each epoch."""
    at = max(range(len(valid)), key=lambda i: valid[i][key])
    best = valid[at]
    epoch_end = all(r["epoch"] != best["epoch"] for r in valid[:at])
    # validation runs at each epoch's end and once more where the budget ran out, mid-epoch; the first record
    # of each completed-epoch count is the epoch's end: the same data seen, whatever the machine's speed
    by_epoch: dict[int, float] = {}
    for r in valid:
        if r["epoch"] >= 1:
            by_epoch.setdefault(r["epoch"], round(r[key], 2))
    return best, f"{best['epoch']}{'' if epoch_end else '+'}", list(by_epoch.values())


def _table(rows: list[dict], minutes: float) -> str:
    best = max((r["val_bleu"] for r in rows if r["val_bleu"] is not None), default=None)
    budget = f"Budget {minutes:g} minutes per setting" if minutes else "No time budget (limits from the config)"
    lines = [f"{budget}; greedy BLEU on the validation split.", "",
             "| setting | minutes | epochs | updates | tokens/s | best val BLEU | at minute | val loss there | val BLEU after epoch 1, 2, … |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bleu = "failed" if r.get("failed") else ("–" if r["val_bleu"] is None else f"{r['val_bleu']:.2f}")
        if r["val_bleu"] is not None and r["val_bleu"] == best:
            bleu = f"**{bleu}**"
        cells = [r["setting"], r["minutes"], r["epochs"], r["updates"], r["tokens_per_s"] or "–", bleu,
                 r["at_minutes"] or "–", r["val_loss"] or "–",
                 " / ".join(f"{b:.2f}" for b in r["by_epoch"]) or "–"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_settings(rows: list[dict], out: Path, highlight: str = BASELINE) -> None:
    """Validation BLEU against minutes and against epochs, one line per row (``highlight``'s drawn thicker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for r in rows:
        style = dict(ms=3, label=r["setting"], lw=2.5 if r["setting"] == highlight else 1.2)
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            line, = by_time.plot(xs, ys, "o-", **style)
            if r["by_epoch"]:
                by_epoch.plot(range(1, len(r["by_epoch"]) + 1), r["by_epoch"], "o-", color=line.get_color(), **style)
    by_time.set_xlabel("minutes (the machine's speed included)")
    by_epoch.set_xlabel("epochs (the same data seen)")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_time.set_ylabel("validation BLEU (greedy)")
    for ax in (by_time, by_epoch):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="a prepared run whose config and corpus every setting starts from")
    p.add_argument("--out", required=True, help="folder for one run per setting and the table")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of each setting (default 15)")
    p.add_argument("--common", default="", help="overrides for every setting, baseline included "
                   "(e.g. 'train.threads=1')")
    p.add_argument("settings", nargs="*", help="one quoted group of overrides per setting")
    args = p.parse_args(argv)
    try:
        base = RunDir.of(args.base)
        base_cfg, meta = base.config(), base.meta()
        common = args.common.split() + [f"train.max_minutes={args.minutes:g}"]
        settings = [[]] + [s.split() for s in args.settings]
        for overrides in settings:  # every override is checked before anything trains
            apply_overrides(base_cfg, common + overrides)
    except MTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for overrides in settings:
        name = setting_name(overrides)
        run = out / name
        extra = common + overrides
        code = _prepare(base, base_cfg, meta, run, extra)
        if code == 0:
            code = _mt("train", "--run", str(run), *extra)
        row = {"setting": " ".join(overrides) or BASELINE, "run": str(run), **summarise(run)}
        if code not in (0, 130):
            row["failed"] = True
            print(f"setting '{row['setting']}' failed (exit {code}); continuing with the next", flush=True)
        rows.append(row)
        if code == 130:
            print("interrupted: re-run the same command to continue the sweep", flush=True)
            break
    table = _table(rows, args.minutes)
    atomic_write(out / "sweep.md", table)
    atomic_write(out / "sweep.json", json.dumps(rows, indent=1) + "\n")
    plot_settings(rows, out / "sweep.png")
    print(table, flush=True)
    return 130 if code == 130 else 0


if __name__ == "__main__":
    sys.exit(main())

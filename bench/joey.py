"""Decoding side by side with Joey NMT (`make bench JOEY=DIR`, `python -m bench --joey DIR`).

The whole process of `mt translate --input` and of Joey NMT's `joeynmt test`, start-up included, on the same
test split, for each beam size, in the order ours, Joey, Joey, ours: a machine whose speed drifts treats both
alike. DIR is what ``../shared/reference/run_joeynmt.sh DIR SECONDS`` leaves: Joey NMT in DIR/venv, its config
DIR/train.yaml, its checkpoints in DIR/model and the test split it names (``data.test``) in DIR/data. Joey
decodes as that script does (64 sentences per batch, length penalty alpha 1); both outputs are scored with
sacreBLEU against the same references. Joey's speed depends on its model: one that stopped early writes long
outputs and decodes slower, so its BLEU is printed beside the times.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from mt.errors import MTError

__all__ = ["JoeyFolder", "bench_against_joey"]


class JoeyFolder:
    """A Joey NMT folder as run_joeynmt.sh leaves it."""

    def __init__(self, folder: Path):
        self.python, config = folder / "venv" / "bin" / "python", folder / "train.yaml"
        for path in (self.python, config):
            if not path.exists():
                raise MTError(f"{path} not found: {folder} is not a Joey NMT folder made by "
                              f"../shared/reference/run_joeynmt.sh {folder} SECONDS")
        self.config = yaml.safe_load(config.read_text(encoding="utf-8"))
        checkpoints = sorted((p for p in (folder / "model").glob("*.ckpt") if p.stem != "best"),
                             key=lambda p: p.stat().st_mtime)
        if not checkpoints:
            raise MTError(f"no checkpoint in {folder / 'model'}: Joey NMT has not trained there yet")
        self.checkpoint = folder / "model" / "latest.ckpt" if (folder / "model" / "latest.ckpt").exists() \
            else checkpoints[-1]
        test, data = Path(self.config["data"]["test"]), self.config["data"]
        self.source, self.reference = (test.with_name(f"{test.name}.{data[side]['lang']}") for side in ("src", "trg"))
        if not self.source.is_file() or not self.reference.is_file():
            raise MTError(f"Joey NMT's test split {self.source} / {self.reference} not found")

    def decode(self, beam: int, out: Path) -> tuple[float, list[str]]:
        """Joey NMT translates its test split with ``beam`` -> whole-process seconds, its output lines."""
        config = {**self.config, "data": {k: v for k, v in self.config["data"].items() if k != "dev"}}
        config["testing"] = {**self.config.get("testing", {}), "load_model": str(self.checkpoint),
                             "beam_size": beam, "batch_size": 64, "batch_type": "sentence", "beam_alpha": 1.0}
        config_path, prefix = out / f"joey-beam{beam}.yaml", out / f"joey-beam{beam}"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return _timed([str(self.python), "-m", "joeynmt", "test", str(config_path), "-o", str(prefix)],
                      Path(f"{prefix}.test"), "Joey NMT")


def _timed(command: list[str], output: Path, who: str) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MTError(f"{who} failed (exit {done.returncode}): {last}")
    return seconds, output.read_text(encoding="utf-8").splitlines()


def bench_against_joey(run: Path, joey: JoeyFolder, beams: list[int], out: Path) -> list[dict]:
    """One record per beam size: both toolkits' whole-process seconds (two runs each), BLEU and the ratio."""
    from eval.scoring import score

    references = joey.reference.read_text(encoding="utf-8").splitlines()
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for beam in beams:
        ours_out = out / f"ours-beam{beam}.txt"
        ours = [sys.executable, "-m", "mt", "translate", "--run", str(run), "--input", str(joey.source),
                "--beam", str(beam), "--output", str(ours_out)]
        seconds: dict[str, list[float]] = {"ours": [], "joey": []}
        hyps: dict[str, list[str]] = {}
        for who in ("ours", "joey", "joey", "ours"):
            took, hyps[who] = _timed(ours, ours_out, "mt translate") if who == "ours" else joey.decode(beam, out)
            seconds[who].append(round(took, 2))
        mean = {who: sum(s) / len(s) for who, s in seconds.items()}
        records.append({"what": "decode-vs-joey", "source": str(joey.source), "sentences": len(references),
                        "beam": beam, "seconds": seconds["ours"], "joey_seconds": seconds["joey"],
                        "joey_over_ours": float(f"{mean['joey'] / mean['ours']:.3g}"),  # 3 digits
                        "bleu": round(score(hyps["ours"], references)["bleu"], 2),
                        "joey_bleu": round(score(hyps["joey"], references)["bleu"], 2)})
    return records

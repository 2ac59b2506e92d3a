"""The run directory: one folder holds everything about one model.

    RUN/config.yaml           resolved config (written by prepare, updated by train)
    RUN/data/                 meta.json, stats.json, SentencePiece model(s), encoded/SPLIT.arrow
    RUN/checkpoints/          last.pt, best.pt, final.pt (what translate/eval/demo load), step-NNNNNNNN.pt
    RUN/train_log.jsonl       one JSON record per logging interval and per validation
    RUN/plots/                curves.png
    RUN/eval/                 NAME.hyp, NAME.json
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mt.config import Config, config_to_dict, load_config
from mt.data.tokenizer import Tokenizer
from mt.errors import MTError
from mt.files import exclusive_lock

log = logging.getLogger("mt")

__all__ = ["FINAL", "META_KEYS", "RunDir"]

FINAL = "final.pt"  # the model training hands on (mt.recipes.averaging); translate, eval and demo load it
# what every RUN/data/meta.json holds (data_prep.prepare writes it)
META_KEYS = ("src", "tgt", "src_model", "tgt_model", "src_vocab_size", "tgt_vocab_size", "tokenizer_sha256", "data",
             "splits")


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def of(cls, path: str | Path) -> RunDir:
        return cls(Path(path))

    config_path = property(lambda self: self.root / "config.yaml")
    data_dir = property(lambda self: self.root / "data")
    encoded_dir = property(lambda self: self.root / "data" / "encoded")
    meta_path = property(lambda self: self.root / "data" / "meta.json")
    stats_path = property(lambda self: self.root / "data" / "stats.json")
    checkpoint_dir = property(lambda self: self.root / "checkpoints")
    log_path = property(lambda self: self.root / "train_log.jsonl")
    plot_dir = property(lambda self: self.root / "plots")
    eval_dir = property(lambda self: self.root / "eval")

    def writing(self, command: str):
        """A context in which this process is the run's only writer (``mt prepare``, ``train``, ``average``):
        another one gets a one-line error naming the holder. Under torchrun only rank 0 takes it (the other ranks
        write nothing of the run's)."""
        if os.environ.get("RANK", "0") != "0":
            return contextlib.nullcontext()
        return exclusive_lock(self.root / ".lock", f"mt {command}")

    def require_prepared(self) -> None:
        if not self.root.is_dir():
            raise MTError(f"run folder not found: {self.root} (create it with `mt prepare --run {self.root} ...`)")
        if not self.meta_path.is_file() or not self.encoded_dir.is_dir():
            raise MTError(f"{self.root} has no prepared data: run `mt prepare --run {self.root} ...` (or `make data`)")

    def config(self) -> Config:
        if not self.config_path.is_file():
            raise MTError(f"{self.config_path} not found: run `mt prepare --run {self.root} ...` first")
        return load_config(self.config_path)

    def meta(self) -> dict[str, Any]:
        self.require_prepared()
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise MTError(f"cannot read {self.meta_path}: {e}; re-run `mt prepare`") from None
        missing = [key for key in META_KEYS if not isinstance(meta, dict) or key not in meta]
        if missing:
            raise MTError(f"{self.meta_path} has no '{missing[0]}': prepared in another layout; re-run `mt prepare`")
        for key in ("src_model", "tgt_model"):  # joined to RUN/data: a name from a file must not lead out of it
            name = meta[key]
            if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise MTError(f"{self.meta_path}: '{key}' must be a file name inside {self.data_dir}, got {name!r}")
        return meta

    def require_data_matches(self, cfg: Config) -> None:
        """Refuse a config whose ``data.*`` settings differ from those RUN/data was prepared with: training reads
        the tokenizer and the encoded splits as prepared, so such an override would be silently ignored."""
        meta = self.meta()
        if (meta["src"], meta["tgt"]) != (cfg.data.src, cfg.data.tgt):
            raise MTError(f"{self.root} was prepared for {meta['src']}->{meta['tgt']} but the config says "
                          f"{cfg.data.src}->{cfg.data.tgt}; re-run `mt prepare` or fix data.src/data.tgt")
        prepared = meta["data"]
        wanted = config_to_dict(cfg)["data"]
        changed = [key for key in wanted if key in prepared and prepared[key] != wanted[key]]
        if changed:
            was = ", ".join(f"data.{key}={_show(prepared[key])}" for key in changed)
            now = " ".join(f"data.{key}={_show(wanted[key])}" for key in changed)
            raise MTError(f"{self.data_dir} was prepared with {was} but the config says {now}: prepare it again "
                          f"with `mt prepare --run {self.root} ... {now}` (or `make data RUN={self.root} "
                          f"ARGS=\"{now}\"`), or drop the override")

    def model_path(self, checkpoint: str = "final") -> Path:
        """``final`` (best.pt until training has chosen), ``best`` (last.pt before the first validation), ``last``,
        another name in RUN/checkpoints, or a path -> the checkpoint file; a missing one is a one-line error."""
        if checkpoint == "final" and not (self.checkpoint_dir / FINAL).is_file():
            checkpoint = "best"  # training has not chosen (yet): its best checkpoint (or last.pt below)
        named = self.checkpoint_dir / f"{checkpoint}.pt"
        path = named if checkpoint in ("final", "best", "last") or named.is_file() else Path(checkpoint)
        if checkpoint == "best" and not path.is_file() and (self.checkpoint_dir / "last.pt").is_file():
            path = self.checkpoint_dir / "last.pt"
        if not path.is_file():
            raise MTError(f"no trained model in {self.root}: {path} not found (run `make train` or "
                          f"`mt train --run {self.root}`)")
        return path

    def tokenizer(self) -> Tokenizer:
        meta = self.meta()
        return Tokenizer(self.data_dir / meta["src_model"], self.data_dir / meta["tgt_model"])

    def stats(self) -> dict[str, Any]:
        """RUN/data/stats.json (what `mt prepare` counted), or {} where it is missing or unreadable."""
        try:
            stats = json.loads(self.stats_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stats if isinstance(stats, dict) else {}

    def sentence_tokens(self) -> int | None:
        """The mean length of the training sources in subwords (RUN/data/stats.json), or None where unknown."""
        try:
            mean = self.stats()["splits"]["train"]["src_tokens_mean"]
        except (KeyError, TypeError):
            return None
        return max(1, round(mean)) if isinstance(mean, (int, float)) else None

    def split_texts(self, name: str) -> tuple[list[str], list[str]]:
        """Split ``name``'s sources (normalised) and references (as given; ``tgt`` where a split has no ``ref``)."""
        encoded = self.encoded()
        if name not in encoded:
            raise MTError(f"{self.root} has no split '{name}'; it has {', '.join(encoded)}")
        split = encoded[name]
        return split["src"], split["ref"] if "ref" in split.column_names else split["tgt"]

    def evaluations(self) -> dict[str, Any]:
        """Result name -> its `mt eval` report (RUN/eval/NAME.json); an unreadable report is left out."""
        found = {}
        for report in sorted(self.eval_dir.glob("*.json")) if self.eval_dir.is_dir() else []:
            if report.name.endswith(".compare.json"):
                continue  # a comparison of systems, not a report of this run
            try:
                found[report.stem] = json.loads(report.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("skipping unreadable evaluation report %s", report)
        return found

    def encoded(self):
        """The encoded splits as a ``datasets.DatasetDict`` of memory-mapped Arrow files (``encoded/SPLIT.arrow``)."""
        import datasets

        self.require_prepared()
        files = sorted(self.encoded_dir.glob("*.arrow"))
        if not files:
            raise MTError(f"{self.encoded_dir} holds no encoded splits (SPLIT.arrow); re-run `mt prepare`")
        try:
            return datasets.DatasetDict({f.stem: datasets.Dataset.from_file(str(f)) for f in files})
        except Exception as e:  # noqa: BLE001 - a damaged cache is one line for the user
            raise MTError(f"cannot read the encoded data in {self.encoded_dir}: {e}; re-run `mt prepare`") from None


def _show(value: Any) -> str:
    """A config value as it is written on the command line (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)

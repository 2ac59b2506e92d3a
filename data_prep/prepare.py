"""`mt prepare`: load a parallel corpus, clean it, train SentencePiece, and cache the encoded splits in RUN/data.

Everything is built in a temporary folder next to RUN/data and renamed into place at the end, so a failed or
interrupted prepare never leaves a half-written RUN/data behind. The cache key covers the input bytes and the
data config: re-running with the same inputs reuses the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import datasets

from data_prep.clean import FILTER_REASONS, filter_encoded, normalize_pairs
from data_prep.sources import load_hub, load_local
from mt.config import Config, config_to_dict
from mt.errors import MTError
from mt.run import RunDir
from mt.text import normalize
from mt.tokenizer import Tokenizer, train_sentencepiece

__all__ = ["PREP_VERSION", "prepare", "summary"]

datasets.disable_progress_bars()

log = logging.getLogger("mt")
PREP_VERSION = 1  # bump when the output of prepare changes for the same input


def _cache_key(fingerprint: str, cfg: Config) -> str:
    blob = json.dumps({"v": PREP_VERSION, "input": fingerprint, "data": config_to_dict(cfg)["data"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _mean(lengths: list[int]) -> float:
    return round(sum(lengths) / max(len(lengths), 1), 2)


def prepare(
    run: RunDir, cfg: Config, data_dir: str | None = None, hf_dataset: str | None = None, hf_config: str | None = None
) -> dict[str, Any]:
    """Prepare RUN/data and return its statistics (also saved as RUN/data/stats.json)."""
    started = time.perf_counter()
    src, tgt = cfg.data.src, cfg.data.tgt
    if data_dir:
        splits, fingerprint = load_local(data_dir, src, tgt)
        origin = str(Path(data_dir).resolve())
    elif hf_dataset:
        splits, fingerprint = load_hub(hf_dataset, hf_config, src, tgt)
        origin = f"hub:{hf_dataset}" + (f":{hf_config}" if hf_config else "")
    else:
        raise MTError("give --data-dir DIR or --hf-dataset NAME")
    key = _cache_key(fingerprint, cfg)
    if run.meta_path.is_file() and run.stats_path.is_file():
        try:
            meta = json.loads(run.meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
        if meta.get("cache_key") == key and run.encoded_dir.is_dir():
            log.info("data unchanged: reusing the cache in %s", run.data_dir)
            return json.loads(run.stats_path.read_text(encoding="utf-8"))

    run.root.mkdir(parents=True, exist_ok=True)
    tmp = run.root / f".data.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        stats = _build(tmp, splits, cfg, origin)
        stats["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
        meta = {
            "cache_key": key, "origin": origin, "src": src, "tgt": tgt,
            "src_model": stats["tokenizer"]["src_model"], "tgt_model": stats["tokenizer"]["tgt_model"],
            "src_vocab_size": stats["tokenizer"]["src_vocab_size"],
            "tgt_vocab_size": stats["tokenizer"]["tgt_vocab_size"],
            "tokenizer_sha256": stats["tokenizer"]["sha256"], "splits": list(stats["splits"]),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        old = run.root / f".data.old-{os.getpid()}"
        if run.data_dir.exists():
            run.data_dir.rename(old)
        tmp.rename(run.data_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def summary(stats: dict[str, Any], run: RunDir) -> str:
    """What ``mt prepare`` prints: the filter counts, the vocabulary and each split's size."""
    f, tok = stats["filtered"], stats["tokenizer"]
    removed = ", ".join(f"{k} {f[k]}" for k in FILTER_REASONS)
    lines = [f"train: kept {f['kept_pairs']} of {f['input_pairs']} pairs (removed: {removed})",
             f"vocabulary: {tok['type']}, {'joint' if tok['joint'] else 'separate'}, "
             f"src {tok['src_vocab_size']}, tgt {tok['tgt_vocab_size']}"]
    lines += [f"{name}: {s['sentences']} sentences, mean tokens src {s['src_tokens_mean']} tgt {s['tgt_tokens_mean']}"
              for name, s in stats["splits"].items()]
    return "\n".join([*lines, f"prepared {run.data_dir} in {stats['seconds']} s"])


def _build(out: Path, splits: dict[str, datasets.Dataset], cfg: Config, origin: str) -> dict[str, Any]:
    d = cfg.data
    train = splits["train"]
    train_src, train_tgt, counts = normalize_pairs(train["src"], train["tgt"], dedup=d.dedup)
    if not train_src:
        raise MTError(f"the training split of {origin} has no pair with both sides non-empty")
    src_name, tgt_name, sizes = _train_tokenizers(out, train_src, train_tgt, d)
    tok = Tokenizer(out / src_name, out / tgt_name)

    src_ids, tgt_ids = tok.encode_src(train_src), tok.encode_tgt(train_tgt)
    keep = filter_encoded(src_ids, tgt_ids, d.max_tokens, d.max_ratio, d.ratio_min_tokens, counts)
    if not keep:
        raise MTError(f"every training pair of {origin} was filtered out: {dict(counts)}")
    columns = {
        "train": {
            "src": [train_src[i] for i in keep], "tgt": [train_tgt[i] for i in keep],
            "src_ids": [src_ids[i] for i in keep], "tgt_ids": [tgt_ids[i] for i in keep],
        }
    }
    for name, ds in splits.items():
        if name == "train":
            continue
        # Evaluation splits stay line for line; "ref" keeps the reference exactly as given for scoring.
        src_text = [normalize(s) for s in ds["src"]]
        tgt_text = [normalize(t) for t in ds["tgt"]]
        columns[name] = {
            "src": src_text, "tgt": tgt_text, "ref": list(ds["tgt"]),
            "src_ids": tok.encode_src(src_text), "tgt_ids": tok.encode_tgt(tgt_text),
        }
    features = {
        "src": datasets.Value("string"), "tgt": datasets.Value("string"),
        "src_ids": datasets.Sequence(datasets.Value("int32")), "tgt_ids": datasets.Sequence(datasets.Value("int32")),
    }
    encoded = datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            cols, features=datasets.Features({**features, **({"ref": datasets.Value("string")} if "ref" in cols else {})})
        )
        for name, cols in columns.items()
    })
    encoded.save_to_disk(str(out / "encoded"))

    return _stats(out, origin, d, len(train), len(keep), counts, src_name, tgt_name, sizes, columns)


def _train_tokenizers(out: Path, train_src: list[str], train_tgt: list[str], d) -> tuple[str, str, tuple[int, int]]:
    """SentencePiece model(s) in ``out``: one joint model or one per language -> file names and vocabulary sizes."""
    log.info("training SentencePiece (%s, %s vocabulary of %d)", d.spm_model_type,
             "joint" if d.joint_vocab else "separate", d.vocab_size)
    train_args = dict(model_type=d.spm_model_type, character_coverage=d.character_coverage,
                      threads=os.cpu_count() or 1)
    if d.joint_vocab:
        size = train_sentencepiece(train_src + train_tgt, out / "spm.model", d.vocab_size, **train_args)
        return "spm.model", "spm.model", (size, size)
    src_name, tgt_name = f"spm.{d.src}.model", f"spm.{d.tgt}.model"
    return src_name, tgt_name, (train_sentencepiece(train_src, out / src_name, d.vocab_size, **train_args),
                                train_sentencepiece(train_tgt, out / tgt_name, d.vocab_size, **train_args))


def _stats(out: Path, origin: str, d, input_pairs: int, kept: int, counts, src_name: str, tgt_name: str,
           sizes: tuple[int, int], columns: dict) -> dict[str, Any]:
    sha = hashlib.sha256()  # the checksum of all tokenizer models together: checkpoints must match it
    for name in sorted({src_name, tgt_name}):
        sha.update((out / name).read_bytes())
    return {
        "origin": origin,
        "languages": {"src": d.src, "tgt": d.tgt},
        "filtered": {"input_pairs": input_pairs, "kept_pairs": kept, **dict(counts)},
        "tokenizer": {
            "type": d.spm_model_type, "joint": d.joint_vocab, "src_model": src_name, "tgt_model": tgt_name,
            "src_vocab_size": sizes[0], "tgt_vocab_size": sizes[1], "sha256": sha.hexdigest(),
        },
        "splits": {
            name: {
                "sentences": len(cols["src"]),
                "src_tokens_mean": _mean([len(x) for x in cols["src_ids"]]),
                "tgt_tokens_mean": _mean([len(x) for x in cols["tgt_ids"]]),
            }
            for name, cols in columns.items()
        },
    }

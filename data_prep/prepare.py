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
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from data_prep.clean import (
    FILTER_REASONS,
    PairFilter,
    first_occurrences,
    length_filter,
    normalize_chunk,
    pair_hashes,
)
from data_prep.sources import PairSource, load_hub, load_local
from mt.config import Config, DataConfig, config_to_dict
from mt.data.tokenizer import BOS_ID, UNK_ID, Tokenizer, train_sentencepiece
from mt.errors import MTError
from mt.run import RunDir
from mt.text import normalize

__all__ = ["PREP_VERSION", "BackTranslations", "prepare", "summary"]

datasets.disable_progress_bars()

log = logging.getLogger("mt")
PREP_VERSION = 2  # bump when the output of prepare changes for the same input


def _cache_key(fingerprint: str, cfg: Config) -> str:
    blob = json.dumps({"v": PREP_VERSION, "input": fingerprint, "data": config_to_dict(cfg)["data"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _mean(total: int, count: int) -> float:
    return round(total / max(count, 1), 2)


def prepare(
    run: RunDir, cfg: Config, data_dir: str | None = None, hf_dataset: str | None = None, hf_config: str | None = None,
    tokenizer_from: RunDir | None = None, back_translations: BackTranslations | None = None,
) -> dict[str, Any]:
    """Prepare RUN/data and return its statistics (also saved as RUN/data/stats.json). ``tokenizer_from``: encode
    with that prepared run's SentencePiece model(s), copied byte for byte, instead of training new ones.
    ``back_translations``: synthetic pairs added to the training split (``BackTranslations``)."""
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
    reused = ReusedTokenizer.of(tokenizer_from, cfg.data) if tokenizer_from else None
    key = _cache_key(fingerprint + (f":tokenizer={reused.sha256}" if reused else "")
                     + (f":synthetic={back_translations.fingerprint()}" if back_translations else ""), cfg)
    data_settings = config_to_dict(cfg)["data"]  # kept in meta.json: `mt train` refuses a config that differs
    if run.root.is_dir():
        _recover(run)
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
        stats = _build(tmp, splits, cfg, origin, reused, back_translations)
        stats["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
        meta = {
            "cache_key": key, "origin": origin, "src": src, "tgt": tgt,
            "src_model": stats["tokenizer"]["src_model"], "tgt_model": stats["tokenizer"]["tgt_model"],
            "src_vocab_size": stats["tokenizer"]["src_vocab_size"],
            "tgt_vocab_size": stats["tokenizer"]["tgt_vocab_size"],
            "tokenizer_sha256": stats["tokenizer"]["sha256"], "splits": list(stats["splits"]),
            "data": data_settings,
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
    if "back_translations" in stats:
        b = stats["back_translations"]
        lines.insert(1, f"back-translations{' (tagged)' if b['tagged'] else ''}: kept {b['kept_pairs']} of "
                        f"{b['input_pairs']} pairs (removed: {', '.join(f'{k} {b[k]}' for k in FILTER_REASONS)})")
    lines += [f"{name}: {s['sentences']} sentences, mean tokens src {s['src_tokens_mean']} tgt {s['tgt_tokens_mean']}"
              for name, s in stats["splits"].items()]
    return "\n".join([*lines, f"prepared {run.data_dir} in {stats['seconds']} s"])


CHUNK = 20_000  # pairs read, normalised, encoded and written at a time: memory does not grow with the corpus

_TEXT = {"src": datasets.Value("string"), "tgt": datasets.Value("string")}
_IDS = {"src_ids": datasets.Sequence(datasets.Value("int32")), "tgt_ids": datasets.Sequence(datasets.Value("int32"))}
TRAIN_SCHEMA = datasets.Features({**_TEXT, **_IDS}).arrow_schema
EVAL_SCHEMA = datasets.Features({**_TEXT, "ref": datasets.Value("string"), **_IDS}).arrow_schema


def _build(out: Path, splits: dict[str, PairSource], cfg: Config, origin: str,
           reused: ReusedTokenizer | None, back: BackTranslations | None) -> dict[str, Any]:
    """Three passes over the training split, each chunk by chunk: clean (normalise, drop empty sides, hash for
    duplicates), train SentencePiece on a sample of the cleaned text (or copy ``reused``), encode and filter by
    length. Then the evaluation splits, line for line. Everything lands in ``out/encoded/SPLIT.arrow``."""
    data_cfg = cfg.data
    counts: Counter = Counter({reason: 0 for reason in FILTER_REASONS})
    cleaned = out / "train.cleaned.arrow"
    input_pairs, hashes = _clean_train(splits["train"], cleaned, counts, data_cfg.dedup, PairFilter(data_cfg))
    keep = first_occurrences(hashes) if data_cfg.dedup else np.ones(len(hashes), dtype=bool)
    counts["duplicate"] = int(len(keep) - keep.sum())
    if not len(keep):
        raise MTError(f"the training split of {origin} has no pair with both sides non-empty")

    if reused:
        src_name, tgt_name, sizes = reused.copy_to(out)
    else:
        src_name, tgt_name, sizes = _train_tokenizers(out, cleaned, keep, data_cfg)
    tok = Tokenizer(out / src_name, out / tgt_name)
    if reused:
        sample = _sample(int(keep.sum()), 1000, seed=3)
        reused.check_coverage(tok, *(_CleanedText(cleaned, keep, (side,), sample) for side in ("src", "tgt")))
    (out / "encoded").mkdir()
    with _arrow_writer(out / "encoded" / "train.arrow", TRAIN_SCHEMA) as writer:
        split_stats = {"train": _encode_train(cleaned, keep, tok, data_cfg, counts, writer)}
        if not split_stats["train"]["sentences"]:
            raise MTError(f"every training pair of {origin} was filtered out: {dict(counts)}")
        synthetic = back.add(out, hashes, tok, data_cfg, writer, split_stats["train"]) if back else None
    cleaned.unlink()
    for name, source in splits.items():
        if name != "train":
            split_stats[name] = _encode_eval(source, tok, out / "encoded" / f"{name}.arrow")
    stats = _stats(out, origin, data_cfg, input_pairs, counts, src_name, tgt_name, sizes, split_stats)
    if synthetic:  # "filtered" counts the genuine pairs, the train split holds both
        stats["filtered"]["kept_pairs"] -= synthetic["kept_pairs"]
        stats["back_translations"] = synthetic
    if reused:
        stats["tokenizer"]["reused_from"] = str(reused.run.root.resolve())
    return stats


class ReusedTokenizer:
    """The SentencePiece model(s) of a prepared run, for a new run (``mt prepare --tokenizer-from RUN``): a
    joint model serves any language pair whose text it covers; separate models are one per language, so each of
    the new pair's languages needs RUN's model of that language (a reverse model reuses both)."""

    MAX_UNKNOWN = 0.01  # more unknown pieces than this in the new text: the tokenizer was made for other scripts

    def __init__(self, run: RunDir, meta: dict, joint: bool, names: tuple[str, str]):
        self.run, self.meta, self.joint, self.names = run, meta, joint, names
        self.sha256 = meta["tokenizer_sha256"]

    @classmethod
    def of(cls, run: RunDir, data_cfg: DataConfig) -> ReusedTokenizer:
        meta = run.meta()
        joint = meta["src_model"] == meta["tgt_model"]
        where = f"--tokenizer-from {run.root}"
        if joint != data_cfg.joint_vocab:
            raise MTError(f"{where}: its tokenizer is {'joint' if joint else 'one model per language'} but "
                          f"data.joint_vocab is {str(data_cfg.joint_vocab).lower()}; set data.joint_vocab="
                          f"{str(joint).lower()}{'' if joint else ' model.share_embeddings=false'}")
        if joint:
            new = {data_cfg.src, data_cfg.tgt} - {meta["src"], meta["tgt"]}
            if new:
                log.warning("%s: its joint tokenizer was trained on %s and %s text, not %s: checking it covers "
                            "the new text", where, meta["src"], meta["tgt"], " and ".join(sorted(new)))
            return cls(run, meta, joint, (meta["src_model"], meta["src_model"]))
        models = {meta["src"]: meta["src_model"], meta["tgt"]: meta["tgt_model"]}
        missing = [lang for lang in (data_cfg.src, data_cfg.tgt) if lang not in models]
        if missing:
            raise MTError(f"{where}: it has SentencePiece models for {meta['src']} and {meta['tgt']}, none for "
                          f"{' and '.join(missing)}")
        return cls(run, meta, joint, (models[data_cfg.src], models[data_cfg.tgt]))

    def copy_to(self, out: Path) -> tuple[str, str, tuple[int, int]]:
        """Copy the model file(s) into ``out`` -> file names and vocabulary sizes (as ``_train_tokenizers``)."""
        for name in set(self.names):
            shutil.copyfile(self.run.data_dir / name, out / name)
        size = {self.meta["src_model"]: self.meta["src_vocab_size"], self.meta["tgt_model"]: self.meta["tgt_vocab_size"]}
        log.info("reusing the SentencePiece model(s) of %s: %s", self.run.root, ", ".join(sorted(set(self.names))))
        return self.names[0], self.names[1], (size[self.names[0]], size[self.names[1]])

    def check_coverage(self, tok: Tokenizer, src_sample: Iterable[str], tgt_sample: Iterable[str]) -> None:
        """Refuse a tokenizer that maps more than ``MAX_UNKNOWN`` of a sample of either side's text to <unk>; warn
        when as much of it falls back to byte pieces (characters its training text lacked: it still encodes them,
        but in pieces the parent model has hardly seen)."""
        where = f"--tokenizer-from {self.run.root}"
        made_for = f"made for {self.meta['src']}-{self.meta['tgt']} text"
        for side, proc, sample in (("source", tok.src, src_sample), ("target", tok.tgt, tgt_sample)):
            ids = [x for row in proc.encode(list(sample)) for x in row]
            total = max(len(ids), 1)
            unknown = sum(x == UNK_ID for x in ids) / total
            if unknown > self.MAX_UNKNOWN:
                raise MTError(f"{where}: {unknown:.1%} of the new corpus's {side} subwords are unknown to its "
                              f"tokenizer ({made_for}); prepare without --tokenizer-from")
            as_bytes = sum(proc.is_byte(x) for x in ids) / total
            if as_bytes > self.MAX_UNKNOWN:
                log.warning("%s: %.1f%% of the new corpus's %s subwords are byte pieces, characters its tokenizer "
                            "(%s) never saw; a model trained with it learns them from this corpus alone",
                            where, 100 * as_bytes, side, made_for)


class BackTranslations:
    """Synthetic pairs added to the training split (``mt prepare --back-translations SRC_FILE TGT_FILE``): usually
    target-side monolingual text (TGT_FILE) and its translation by a reverse model (SRC_FILE, ``mt translate
    --sample``). They go through the same cleaning and length filters as the genuine pairs (a synthetic copy of a
    genuine pair is a duplicate), are counted apart in ``stats.json`` ("back_translations"), and the tokenizer is
    trained on the genuine pairs only. ``tag``: every synthetic source starts with the id of ``<s>``, which a
    source never holds otherwise, so the model can tell them apart (Caswell et al. 2019)."""

    def __init__(self, src_file: str | Path, tgt_file: str | Path, tag: bool = False):
        from data_prep.sources import text_file_pairs

        self.files, self.tag = (Path(src_file), Path(tgt_file)), tag
        for path in self.files:
            if not path.is_file():
                raise MTError(f"--back-translations: {path} not found")
        self.source = text_file_pairs("back-translations", *self.files)

    def fingerprint(self) -> str:
        from mt.text import file_sha256

        return hashlib.sha256(b"".join(file_sha256(p) for p in self.files) + bytes([self.tag])).hexdigest()

    def add(self, out: Path, genuine_hashes: np.ndarray, tok: Tokenizer, data_cfg: DataConfig, writer, train: dict) -> dict:
        """Clean, filter and encode the synthetic pairs into ``writer`` after the genuine ones; add them to the
        ``train`` totals -> their own counts."""
        counts: Counter = Counter({reason: 0 for reason in FILTER_REASONS})
        cleaned = out / "synthetic.cleaned.arrow"
        input_pairs, hashes = _clean_train(self.source, cleaned, counts, data_cfg.dedup, PairFilter(data_cfg),
                                           what="back-translations")
        keep = (first_occurrences(np.concatenate([genuine_hashes, hashes]))[len(genuine_hashes):] if data_cfg.dedup
                else np.ones(len(hashes), dtype=bool))
        counts["duplicate"] = int(len(keep) - keep.sum())
        totals = _encode_train(cleaned, keep, tok, data_cfg, counts, writer, BOS_ID if self.tag else None, "back-translations")
        cleaned.unlink()
        for key in totals:
            train[key] += totals[key]
        return {"source_file": str(self.files[0].resolve()), "target_file": str(self.files[1].resolve()),
                "tagged": self.tag, "input_pairs": input_pairs, "kept_pairs": totals["sentences"],
                **{reason: counts[reason] for reason in FILTER_REASONS}}


def _bar(desc: str, total: int | None) -> tqdm:
    return tqdm(total=total, desc=desc, unit=" pairs", unit_scale=True, mininterval=1.0, dynamic_ncols=True)


@contextmanager
def _arrow_writer(path: Path, schema: pa.Schema) -> Iterator[pa.ipc.RecordBatchStreamWriter]:
    """An Arrow stream file written batch by batch (what ``datasets.Dataset.from_file`` memory-maps)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        yield writer


def _recover(run: RunDir) -> None:
    """What a killed prepare left (its caller holds the run's lock, so no other writer is at work): a swap cut
    between its two renames leaves RUN/data missing and the previous data as .data.old-PID, which goes back; the
    half-built .data.tmp-PID folders and any other .data.old-PID are deleted."""
    olds = sorted(run.root.glob(".data.old-*"), key=lambda p: p.stat().st_mtime)
    if not run.data_dir.exists() and olds:
        log.warning("restoring %s from %s, left by a prepare that was killed while swapping it", run.data_dir,
                    olds[-1].name)
        olds.pop().rename(run.data_dir)
    for stale in [*run.root.glob(".data.tmp-*"), *olds]:
        log.warning("removing %s, left by a prepare that was killed", stale.name)
        shutil.rmtree(stale, ignore_errors=True)


def _lengths(ids: list[list[int]]) -> np.ndarray:
    """(N,) int64: the length of each id list."""
    return np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))


def _clean_train(source: PairSource, path: Path, counts: Counter, dedup: bool, pair_filter: PairFilter,
                 what: str = "train") -> tuple[int, np.ndarray]:
    """Pass 1: normalise the training pairs, drop those with an empty side or a ``pair_filter`` reason, write the
    rest to ``path`` (Arrow)
    -> the number of input pairs and the (N,) uint64 hash of each written pair (zeros without ``dedup``)."""
    schema = datasets.Features(_TEXT).arrow_schema
    input_pairs, hashes = 0, []
    with _arrow_writer(path, schema) as writer, _bar(f"cleaning {what}", source.rows) as bar:
        for raw_src, raw_tgt in source.chunks(CHUNK):
            src, tgt = normalize_chunk(raw_src, raw_tgt, counts, pair_filter)
            input_pairs += len(raw_src)
            hashes.append(pair_hashes(src, tgt) if dedup else np.zeros(len(src), dtype=np.uint64))
            writer.write_batch(pa.record_batch([pa.array(src, pa.string()), pa.array(tgt, pa.string())], schema=schema))
            bar.update(len(raw_src))
    return input_pairs, np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)


def _read_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow stream file, read one at a time (not memory-mapped)."""
    with pa.OSFile(str(path)) as f:
        yield from pa.ipc.open_stream(f)


def _kept_batches(path: Path, keep: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The cleaned training pairs, chunk by chunk, without the duplicates (``keep`` False)."""
    start = 0
    for batch in _read_batches(path):
        mask = keep[start : start + batch.num_rows]
        start += batch.num_rows
        yield batch if mask.all() else batch.filter(pa.array(mask))


class _CleanedText:
    """The cleaned training text of some columns ("src", "tgt"), one after the other, duplicates skipped; with
    ``sample`` (sorted positions into that sequence of sentences) only those. Re-iterable: SentencePiece may read
    it twice (a vocabulary too large for the corpus is retried smaller)."""

    def __init__(self, path: Path, keep: np.ndarray, columns: tuple[str, ...], sample: np.ndarray | None):
        self.path, self.keep, self.columns, self.sample = path, keep, columns, sample

    def __iter__(self) -> Iterator[str]:
        start = 0  # the position of the batch's first sentence in the sequence
        for column in self.columns:
            for batch in _kept_batches(self.path, self.keep):
                text = batch.column(column)
                if self.sample is None:
                    yield from text.to_pylist()
                else:
                    lo, hi = np.searchsorted(self.sample, [start, start + len(text)])
                    yield from text.take(pa.array(self.sample[lo:hi] - start)).to_pylist()
                start += len(text)


def _sample(sentences: int, size: int, seed: int) -> np.ndarray | None:
    """Sorted positions of a seeded random sample of ``size`` of ``sentences`` (None: take them all)."""
    if not size or sentences <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(sentences, size, replace=False))


def _train_tokenizers(out: Path, cleaned: Path, keep: np.ndarray, data_cfg: DataConfig) -> tuple[str, str, tuple[int, int]]:
    """Pass 2: SentencePiece model(s) in ``out``, one joint model or one per language, trained on a seeded random
    sample of ``data.spm_sample_size`` sentences of the training text (drawn here, the same on every machine and
    in every process) -> file names and vocabulary sizes."""
    pairs = int(keep.sum())
    log.info("training SentencePiece (%s, %s vocabulary of %d) on %s", data_cfg.spm_model_type,
             "joint" if data_cfg.joint_vocab else "separate", data_cfg.vocab_size,
             f"a sample of up to {data_cfg.spm_sample_size:,} sentences" if data_cfg.spm_sample_size else "all sentences")
    train_args = dict(model_type=data_cfg.spm_model_type, character_coverage=data_cfg.character_coverage,
                      threads=os.cpu_count() or 1, byte_fallback=data_cfg.byte_fallback)
    started = time.perf_counter()
    if data_cfg.joint_vocab:
        text = _CleanedText(cleaned, keep, ("src", "tgt"), _sample(2 * pairs, data_cfg.spm_sample_size, seed=1))
        size = train_sentencepiece(text, out / "spm.model", data_cfg.vocab_size, **train_args)
        names, sizes = ("spm.model", "spm.model"), (size, size)
    else:
        names = (f"spm.{data_cfg.src}.model", f"spm.{data_cfg.tgt}.model")
        sizes = tuple(
            train_sentencepiece(_CleanedText(cleaned, keep, (column,), _sample(pairs, data_cfg.spm_sample_size, seed)),
                                out / name, data_cfg.vocab_size, **train_args)
            for column, name, seed in zip(("src", "tgt"), names, (1, 2)))
    log.info("SentencePiece trained on %d pairs' text in %.1f s", pairs, time.perf_counter() - started)
    return names[0], names[1], sizes


def _int32_lists(rows: list[list[int]], lengths: np.ndarray) -> pa.Array:
    """Python lists of ids -> an Arrow list<int32> array, built from flat numpy buffers (no per-row objects)."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _encode_train(cleaned: Path, keep: np.ndarray, tok: Tokenizer, data_cfg: DataConfig, counts: Counter,
                  writer: pa.ipc.RecordBatchStreamWriter, tag: int | None = None, what: str = "train") -> dict:
    """Pass 3: encode the cleaned pairs, drop those too long or with an extreme length ratio, write the rest;
    ``tag``: an id put before every source (the mark of synthetic pairs)."""
    totals = {"sentences": 0, "src_tokens": 0, "tgt_tokens": 0}
    with _bar(f"encoding {what}", int(keep.sum())) as bar:
        for batch in _kept_batches(cleaned, keep):
            src_ids = tok.encode_src(batch.column("src").to_pylist())
            if tag is not None:
                src_ids = [[tag, *ids] for ids in src_ids]
            tgt_ids = tok.encode_tgt(batch.column("tgt").to_pylist())
            src_len, tgt_len = _lengths(src_ids), _lengths(tgt_ids)
            ok = length_filter(src_len, tgt_len, data_cfg.max_tokens, data_cfg.max_ratio, data_cfg.ratio_min_tokens, counts)
            if not ok.all():
                rows = np.flatnonzero(ok)
                batch, src_len, tgt_len = batch.filter(pa.array(ok)), src_len[ok], tgt_len[ok]
                src_ids, tgt_ids = [src_ids[i] for i in rows], [tgt_ids[i] for i in rows]
            writer.write_batch(pa.record_batch(
                [batch.column("src"), batch.column("tgt"), _int32_lists(src_ids, src_len),
                 _int32_lists(tgt_ids, tgt_len)], schema=TRAIN_SCHEMA))
            totals["sentences"] += len(src_ids)
            totals["src_tokens"] += int(src_len.sum())
            totals["tgt_tokens"] += int(tgt_len.sum())
            bar.update(len(ok))
    return totals


def _encode_eval(source: PairSource, tok: Tokenizer, path: Path) -> dict:
    """An evaluation split, line for line (never filtered); "ref" keeps the reference exactly as given."""
    raw_src, raw_tgt = source.read_all()
    src, tgt = [normalize(s) for s in raw_src], [normalize(t) for t in raw_tgt]
    src_ids, tgt_ids = tok.encode_src(src), tok.encode_tgt(tgt)
    src_len, tgt_len = _lengths(src_ids), _lengths(tgt_ids)
    with _arrow_writer(path, EVAL_SCHEMA) as writer:
        writer.write_batch(pa.record_batch(
            [pa.array(src, pa.string()), pa.array(tgt, pa.string()), pa.array(raw_tgt, pa.string()),
             _int32_lists(src_ids, src_len), _int32_lists(tgt_ids, tgt_len)], schema=EVAL_SCHEMA))
    return {"sentences": len(src), "src_tokens": int(src_len.sum()), "tgt_tokens": int(tgt_len.sum())}


def _stats(out: Path, origin: str, data_cfg: DataConfig, input_pairs: int, counts: Counter, src_name: str, tgt_name: str,
           sizes: tuple[int, int], split_stats: dict[str, dict]) -> dict[str, Any]:
    sha = hashlib.sha256()  # the checksum of all tokenizer models together: checkpoints must match it
    for name in sorted({src_name, tgt_name}):
        sha.update((out / name).read_bytes())
    return {
        "origin": origin,
        "languages": {"src": data_cfg.src, "tgt": data_cfg.tgt},
        "filtered": {"input_pairs": input_pairs, "kept_pairs": split_stats["train"]["sentences"],
                     **{reason: counts[reason] for reason in FILTER_REASONS}},
        "tokenizer": {
            "type": data_cfg.spm_model_type, "joint": data_cfg.joint_vocab, "src_model": src_name, "tgt_model": tgt_name,
            "src_vocab_size": sizes[0], "tgt_vocab_size": sizes[1], "sha256": sha.hexdigest(),
        },
        "splits": {
            name: {
                "sentences": s["sentences"],
                "src_tokens_mean": _mean(s["src_tokens"], s["sentences"]),
                "tgt_tokens_mean": _mean(s["tgt_tokens"], s["sentences"]),
            }
            for name, s in split_stats.items()
        },
    }

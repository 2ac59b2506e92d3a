"""Corpus sources: a local folder of ``NAME.LANG[.gz]`` files, or a Hugging Face Hub dataset.

Both return ``{split: PairSource}`` (the split names being ``train``, ``val`` and any test split names) plus a
fingerprint that changes whenever the input changes. A ``PairSource`` hands out raw (source, target) lines in
chunks, so the training split never has to fit in memory: local training files are read line by line while they
are prepared, Hub datasets are read batch by batch from their memory-mapped Arrow cache.

Local files are read here rather than by ``datasets``' text builder so that every problem can be reported with
its file and line (bytes that are not UTF-8, sides of different lengths). Evaluation splits are small and are read
(and checked) before anything is built; the training split is checked as it streams.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import datasets

from mt.errors import MTError
from mt.text import file_sha256, iter_lines, read_lines

__all__ = ["VAL_NAMES", "PairSource", "load_hub", "load_local", "text_file_pairs"]

log = logging.getLogger("mt")
VAL_NAMES = ("val", "valid", "dev", "validation")
_SPLIT_FILE = re.compile(r"^(?P<split>[^/]+?)\.(?P<lang>[A-Za-z][A-Za-z0-9_-]*)(?:\.gz)?$")

Chunks = Iterator[tuple[list[str], list[str]]]


@dataclass(frozen=True)
class PairSource:
    """One split as raw (source lines, target lines) chunks of at most ``size`` pairs: ``chunks(size)``."""

    chunks: Callable[[int], Chunks]
    rows: int | None = None  # the number of pairs when known before reading (Hub datasets, evaluation splits)

    def read_all(self) -> tuple[list[str], list[str]]:
        """The whole split in memory (for the small evaluation splits)."""
        src: list[str] = []
        tgt: list[str] = []
        for s, t in self.chunks(1 << 16):
            src += s
            tgt += t
        return src, tgt


def _in_memory(src: list[str], tgt: list[str]) -> PairSource:
    def chunks(size: int) -> Chunks:
        for i in range(0, len(src), size):
            yield src[i : i + size], tgt[i : i + size]

    return PairSource(chunks, len(src))


def text_file_pairs(name: str, src_path: Path, tgt_path: Path) -> PairSource:
    """A split streamed from two line-aligned text files; a length mismatch is reported with both line counts."""

    def chunks(size: int) -> Chunks:
        src_lines, tgt_lines = iter_lines(src_path), iter_lines(tgt_path)
        rows = 0
        while True:
            src, tgt = list(islice(src_lines, size)), list(islice(tgt_lines, size))
            if len(src) != len(tgt):
                src_count = rows + len(src) + sum(1 for _ in src_lines)
                tgt_count = rows + len(tgt) + sum(1 for _ in tgt_lines)
                raise MTError(f"split '{name}': {src_path} has {src_count} lines but {tgt_path} has {tgt_count}")
            if not src:
                break
            rows += len(src)
            yield src, tgt
        if not rows:
            raise MTError(f"split '{name}' is empty: {src_path} and {tgt_path} have no lines")

    return PairSource(chunks)


def _find_split_files(folder: Path, src: str, tgt: str) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _SPLIT_FILE.match(path.name)
        if match and path.is_file() and match["lang"] in (src, tgt):
            sides = found.setdefault(match["split"], {})
            if match["lang"] in sides:
                raise MTError(f"both {sides[match['lang']]} and {path} exist: keep only one")
            sides[match["lang"]] = path
    return found


def load_local(folder: str | Path, src: str, tgt: str) -> tuple[dict[str, PairSource], str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise MTError(f"data folder not found or not a folder: {folder}")
    try:
        found = _find_split_files(folder, src, tgt)
    except PermissionError as e:
        raise MTError(f"cannot read data folder {folder}: {e}") from None
    val_names = [name for name in VAL_NAMES if name in found]
    if "train" not in found:
        raise MTError(f"no training split in {folder}: expected train.{src} and train.{tgt} (optionally .gz)")
    if not val_names:
        raise MTError(f"no validation split in {folder}: expected val.{src} and val.{tgt} (or valid.*, dev.*)")
    if len(val_names) > 1:
        raise MTError(f"several validation splits in {folder} ({', '.join(val_names)}): keep one")
    hasher = hashlib.sha256(f"local:{src}-{tgt}".encode())
    splits: dict[str, PairSource] = {}
    for name, sides in found.items():
        split = "val" if name in VAL_NAMES else name
        missing = [lang for lang in (src, tgt) if lang not in sides]
        if missing:
            message = f"split '{name}' in {folder} has no {missing[0]} side ({name}.{missing[0]}[.gz])"
            if split in ("train", "val"):
                raise MTError(message)
            log.warning("%s: skipping it", message)
            continue
        if split == "train":  # streamed while it is prepared: only its checksum is read now
            hasher.update(f"{split}:".encode() + file_sha256(sides[src]) + file_sha256(sides[tgt]))
            splits[split] = text_file_pairs(name, sides[src], sides[tgt])
            continue
        src_lines, src_digest = read_lines(sides[src])
        tgt_lines, tgt_digest = read_lines(sides[tgt])
        if len(src_lines) != len(tgt_lines):
            raise MTError(
                f"split '{name}': {sides[src]} has {len(src_lines)} lines but {sides[tgt]} has {len(tgt_lines)}"
            )
        if not src_lines:
            raise MTError(f"split '{name}' is empty: {sides[src]} and {sides[tgt]} have no lines")
        hasher.update(f"{split}:".encode() + src_digest + tgt_digest)
        splits[split] = _in_memory(src_lines, tgt_lines)
    return dict(sorted(splits.items())), hasher.hexdigest()


def _hub_source(ds: datasets.Dataset, src: str, tgt: str, where: str) -> PairSource:
    """A Hub split read batch by batch, from one column per language or from a ``translation`` column of dicts."""
    columns = ds.column_names
    if src in columns and tgt in columns:
        def rows(batch):
            return batch[src], batch[tgt]
        needed = [src, tgt]
    elif "translation" in columns:
        sample = ds[0]["translation"] if len(ds) else {}
        missing = [lang for lang in (src, tgt) if lang not in sample]
        if missing:
            raise MTError(
                f"{where}: no language '{missing[0]}' in the 'translation' column; it has {', '.join(sample) or 'nothing'}"
            )
        def rows(batch):
            pairs = batch["translation"]
            return [p[src] for p in pairs], [p[tgt] for p in pairs]
        needed = ["translation"]
    else:
        missing = [lang for lang in (src, tgt) if lang not in columns]
        raise MTError(f"{where}: no column for language '{missing[0]}'; columns are {', '.join(columns)}")

    def chunks(size: int) -> Chunks:
        for batch in ds.select_columns(needed).iter(batch_size=size):
            s, t = rows(batch)
            yield [x or "" for x in s], [x or "" for x in t]  # a missing side (None) is an empty line

    return PairSource(chunks, len(ds))


def load_hub(name: str, config: str | None, src: str, tgt: str) -> tuple[dict[str, PairSource], str]:
    """Load a Hub dataset with splits train / validation (or val, valid, dev) / test..."""
    try:
        dsd = datasets.load_dataset(name, config)
    except Exception as e:  # noqa: BLE001 - network, missing dataset, bad config: all one line for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTError(f"cannot load Hub dataset '{name}'{f' ({config})' if config else ''}: {first}") from None
    if not isinstance(dsd, datasets.DatasetDict):
        raise MTError(f"Hub dataset '{name}' has no splits")
    splits: dict[str, PairSource] = {}
    for split_name, ds in dsd.items():
        split = "val" if split_name in VAL_NAMES else split_name
        splits[split] = _hub_source(ds, src, tgt, f"Hub dataset '{name}' split '{split_name}'")
    for required in ("train", "val"):
        if required not in splits:
            raise MTError(f"Hub dataset '{name}' has no '{required}' split; it has {', '.join(dsd)}")
    fingerprint = hashlib.sha256(
        f"hub:{name}:{config}:{src}-{tgt}:".encode() + "".join(ds._fingerprint for ds in dsd.values()).encode()
    ).hexdigest()
    return dict(sorted(splits.items())), fingerprint

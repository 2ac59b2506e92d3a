"""Corpus sources: a local folder of ``NAME.LANG[.gz]`` files, or a Hugging Face Hub dataset.

Both return ``{split: Dataset}`` with string columns ``src`` and ``tgt`` (raw lines), the split names being
``train``, ``val`` and any test split names, plus a fingerprint that changes whenever the input changes.

Local files are read here rather than by ``datasets``' text builder so that every problem can be reported with
its file and line (bytes that are not UTF-8, sides of different lengths) before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import datasets

from mt.errors import MTError
from mt.text import read_lines

__all__ = ["VAL_NAMES", "load_hub", "load_local"]

log = logging.getLogger("mt")
VAL_NAMES = ("val", "valid", "dev", "validation")
_SPLIT_FILE = re.compile(r"^(?P<split>[^/]+?)\.(?P<lang>[A-Za-z][A-Za-z0-9_-]*)(?:\.gz)?$")


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


def load_local(folder: str | Path, src: str, tgt: str) -> tuple[dict[str, datasets.Dataset], str]:
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
    splits: dict[str, datasets.Dataset] = {}
    for name, sides in found.items():
        split = "val" if name in VAL_NAMES else name
        missing = [lang for lang in (src, tgt) if lang not in sides]
        if missing:
            message = f"split '{name}' in {folder} has no {missing[0]} side ({name}.{missing[0]}[.gz])"
            if split in ("train", "val"):
                raise MTError(message)
            log.warning("%s: skipping it", message)
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
        splits[split] = datasets.Dataset.from_dict({"src": src_lines, "tgt": tgt_lines})
    return dict(sorted(splits.items())), hasher.hexdigest()


def _columns_for(ds: datasets.Dataset, src: str, tgt: str, where: str) -> datasets.Dataset:
    columns = ds.column_names
    if src in columns and tgt in columns:
        out = ds.select_columns([src, tgt]).rename_columns({src: "src", tgt: "tgt"})
    elif "translation" in columns:
        sample = ds[0]["translation"] if len(ds) else {}
        missing = [lang for lang in (src, tgt) if lang not in sample]
        if missing:
            raise MTError(
                f"{where}: no language '{missing[0]}' in the 'translation' column; it has {', '.join(sample) or 'nothing'}"
            )
        out = ds.map(
            lambda row: {"src": row["translation"][src], "tgt": row["translation"][tgt]},
            remove_columns=columns,
        )
    else:
        missing = [lang for lang in (src, tgt) if lang not in columns]
        raise MTError(f"{where}: no column for language '{missing[0]}'; columns are {', '.join(columns)}")
    return out.map(lambda row: {"src": row["src"] or "", "tgt": row["tgt"] or ""})


def load_hub(name: str, config: str | None, src: str, tgt: str) -> tuple[dict[str, datasets.Dataset], str]:
    """Load a Hub dataset with splits train / validation (or val, valid, dev) / test..."""
    try:
        dsd = datasets.load_dataset(name, config)
    except Exception as e:  # noqa: BLE001 - network, missing dataset, bad config: all one line for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTError(f"cannot load Hub dataset '{name}'{f' ({config})' if config else ''}: {first}") from None
    if not isinstance(dsd, datasets.DatasetDict):
        raise MTError(f"Hub dataset '{name}' has no splits")
    splits: dict[str, datasets.Dataset] = {}
    for split_name, ds in dsd.items():
        split = "val" if split_name in VAL_NAMES else split_name
        splits[split] = _columns_for(ds, src, tgt, f"Hub dataset '{name}' split '{split_name}'")
    for required in ("train", "val"):
        if required not in splits:
            raise MTError(f"Hub dataset '{name}' has no '{required}' split; it has {', '.join(dsd)}")
    fingerprint = hashlib.sha256(
        f"hub:{name}:{config}:{src}-{tgt}:".encode() + "".join(ds._fingerprint for ds in splits.values()).encode()
    ).hexdigest()
    return dict(sorted(splits.items())), fingerprint

"""Plain text in: strict UTF-8 lines and the normalisation every split and every input sentence gets.

Preparation (``data_prep``) and translation (``mt.translator``) both use these, so a sentence typed into the
demo is treated exactly like a line of the training corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import unicodedata
from pathlib import Path

from mt.errors import MTError

__all__ = ["decode_lines", "normalize", "read_input", "read_lines", "read_text_file"]


def normalize(text: str) -> str:
    """Unicode NFC, every run of whitespace (any Unicode space, tabs, newlines) turned into one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def decode_lines(data: bytes, name: str) -> list[str]:
    """Split UTF-8 bytes into lines. Only ``\\n`` ends a line (``\\r\\n`` is accepted): Unicode line separators
    inside a sentence stay in it, so line i of one side always matches line i of the other. Bytes that are not
    UTF-8 raise ``MTError`` naming ``name`` and the line."""
    if not data:
        return []
    chunks = data.split(b"\n")
    if chunks[-1] == b"":
        chunks.pop()
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        try:
            lines.append(chunk.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise MTError(f"{name} line {number}: bytes that are not UTF-8 at byte {e.start} of the line") from None
    return lines


def read_lines(path: Path) -> tuple[list[str], bytes]:
    """Read a (possibly gzipped) UTF-8 text file into lines; return them and the raw bytes' SHA-256."""
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise MTError(f"cannot read {path}: {e}") from None
    return decode_lines(data, str(path)), hashlib.sha256(raw).digest()


def read_text_file(path: str | Path, what: str = "file") -> list[str]:
    """The lines of a user-given file; a missing one is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise MTError(f"{what} not found: {path}")
    return read_lines(path)[0]


def read_input(path: str | None) -> list[str]:
    """The lines to translate: a file, or standard input when ``path`` is None or "-" (strict UTF-8 either way)."""
    if path and path != "-":
        return read_text_file(path, "input file")
    return decode_lines(sys.stdin.buffer.read(), "standard input")

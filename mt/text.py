"""Plain text in: strict UTF-8 lines and the normalisation every split and every input sentence gets.

Preparation (``data_prep``) and translation (``mt.decode.translator``) both use these, so a sentence typed into the
demo is treated exactly like a line of the training corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from mt.errors import MTError

__all__ = ["decode_lines", "file_sha256", "iter_input", "iter_lines", "normalize", "one_line", "read_input", "read_lines",
           "read_text_file"]


_CONTROL = re.compile(r"\s*[\x00-\x1f\x7f-\x9f\u2028\u2029]+\s*")  # line breaks, tabs and other control characters


def normalize(text: str) -> str:
    """Unicode NFC, every control character (NUL, escape ...) and every run of whitespace (any Unicode space,
    tabs, newlines) turned into one space, trimmed."""
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", text)).split())


def one_line(text: str) -> str:
    """Text fit for one output line: each run of control characters (line breaks, tabs, escapes ...) with the
    spaces around it becomes one space, trimmed; text without any is returned as it is."""
    return _CONTROL.sub(" ", text).strip() if _CONTROL.search(text) else text


def decode_lines(data: bytes, name: str) -> list[str]:
    """Split UTF-8 bytes into lines. Only ``\\n`` ends a line (``\\r\\n`` is accepted): Unicode line separators
    inside a sentence stay in it, so line i of one side always matches line i of the other. Bytes that are not
    UTF-8 raise ``MTError`` naming ``name`` and the line."""
    if not data:
        return []
    chunks = data.split(b"\n")
    if chunks[-1] == b"":
        chunks.pop()
    return [_decode(chunk, name, number) for number, chunk in enumerate(chunks, start=1)]


def _decode(line: bytes, name: str, number: int) -> str:
    """One line's bytes -> text; a byte-order mark at the start of the file (line 1) is dropped, not kept as part
    of the first word."""
    try:
        text = line.decode("utf-8").removesuffix("\r")
        return text.removeprefix("\ufeff") if number == 1 else text
    except UnicodeDecodeError as e:
        raise MTError(f"{name} line {number}: bytes that are not UTF-8 at byte {e.start} of the line") from None


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of a (possibly gzipped) UTF-8 text file, one at a time: the same lines as ``read_lines`` without
    holding the file in memory. Errors (bad gzip, bytes that are not UTF-8) are ``MTError`` naming file and line."""
    number = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for number, line in enumerate(f, start=1):  # binary files split on b"\n" only, like decode_lines
                yield _decode(line.removesuffix(b"\n"), str(path), number)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        where = f" line {number + 1}" if number else ""
        raise MTError(f"cannot read {path}{where}: {e}") from None


def file_sha256(path: Path) -> bytes:
    """The SHA-256 of a file's bytes (as ``read_lines`` returns it), read in blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as e:
        raise MTError(f"cannot read {path}: {e}") from None
    return digest.digest()


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


def iter_input(path: str | None) -> Iterator[str]:
    """The lines to translate, one at a time as they come: a file (checked now), or standard input when ``path``
    is None or "-" (strict UTF-8 either way; errors name the line)."""
    if path and path != "-":
        if not Path(path).is_file():
            raise MTError(f"input file not found: {path}")
        return iter_lines(Path(path))
    return _stdin_lines()


def _stdin_lines() -> Iterator[str]:
    for number, line in enumerate(sys.stdin.buffer, start=1):  # readline: returns as soon as a line is there
        yield _decode(line.removesuffix(b"\n"), "standard input", number)

"""`mt translate` as a filter: input read as it comes, translated in bounded chunks, written and flushed chunk by
chunk in input order.

A reader thread reads ahead at most two chunks of lines, so memory does not grow with the input. A chunk goes to
the translator when it is full (``chunk_lines``, sorted by length into batches inside), when the input ends, or
when no new line has come for ``wait`` seconds while some wait: typed lines, or a program that writes a line and
waits for its answer, get it within about ``wait`` seconds plus the line's translation.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from mt.decode.formats import format_line
from mt.decode.sampling import Sampling
from mt.decode.translator import Translator

__all__ = ["read_chunks", "translate_stream"]

_END = object()


def read_chunks(lines: Iterable[str], chunk_lines: int = 1000, wait: float = 0.05) -> Iterator[list[str]]:
    """Lines -> lists of at most ``chunk_lines`` consecutive lines. An error while reading (bytes that are not
    UTF-8 on line N ...) is raised here after the lines before it have been handed on."""
    ahead: queue.Queue = queue.Queue(maxsize=2 * chunk_lines)

    def read() -> None:
        try:
            for line in lines:
                ahead.put(line)
            ahead.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            ahead.put(e)

    threading.Thread(target=read, name="mt-input", daemon=True).start()
    chunk: list[str] = []
    while True:
        try:
            item = ahead.get(timeout=wait) if chunk else ahead.get()
        except queue.Empty:  # the input is quiet: answer what has come
            yield chunk
            chunk = []
            continue
        if item is _END or isinstance(item, BaseException):
            break
        chunk.append(item)
        if len(chunk) >= chunk_lines:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    if isinstance(item, BaseException):
        raise item


def translate_stream(translator: Translator, chunks: Iterable[list[str]], write: Callable[[str], None],
                     beam: int | None = None, alpha: float | None = None, nbest: int = 1, fmt: str = "text",
                     with_alignment: bool = False, done: Callable[[int], None] = lambda n: None,
                     sampling: Sampling | None = None) -> int:
    """Translate each chunk and ``write`` its formatted lines (one call per chunk); ``done(n)`` after each chunk
    of n lines (a progress bar). Returns the number of lines translated."""
    total = 0
    for chunk in chunks:
        results = translator.translate_batch(chunk, beam=beam, nbest=nbest, alpha=alpha, return_attention=with_alignment,
                                       sampling=sampling, first_line=total)
        write("".join(format_line(total + k, t, fmt, nbest, with_alignment) for k, t in enumerate(results)))
        total += len(chunk)
        done(len(chunk))
    return total

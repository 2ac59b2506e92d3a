"""`mt serve` under load (``make serve-bench``): sentences/s and latency with 1, 8 and 50 concurrent clients, batching
on and off, beside the same sentences through one `mt translate` process.

    python -m bench.serve --run RUN [--split test_2016_flickr] [--clients 1 8 50] [--out serve.json]

Each client sends one sentence per request (LibreTranslate's ``POST /translate``, JSON) and the next as soon as the
answer is back, until the split is done. Per arm: sentences/s (wall clock), p50/p95 latency, the CPU seconds of the
server and of the load generator (which share the machine's cores), and how many answers equal `mt translate`'s
line. `mt translate`'s rate counts its translating only: the whole-process time of the split minus that of one line
(start-up and model loading); it is measured before the servers and again after them. One JSON object per arm is printed and, with ``--out``, written as a list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.process import timed_translate
from mt.run import RunDir

__all__ = ["main"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _mt_translate(run: Path, sentences: list[str]) -> tuple[float, list[str]]:
    """-> (sentences/s translating, the translations), timing whole processes: all the sentences, minus one."""
    with tempfile.TemporaryDirectory() as tmp:
        walls = []
        for lines in (sentences[:1], sentences):
            source, output = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
            source.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
            walls.append(timed_translate(run, source, output)[0])
        translations = output.read_text(encoding="utf-8").split("\n")[:-1]
    return (len(sentences) - 1) / (walls[1] - walls[0]), translations


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON: the load generator shares the cores with the server, and
    httpx took about 4.7 ms of CPU per request here, enough to starve the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        return cls(*await asyncio.open_connection(host, port), host)

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload).encode("utf-8")
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _load(port: int, sentences: list[str], clients: int, src: str, tgt: str) -> tuple[list[float], list[str], int]:
    """-> (latencies in s, answers in input order, errors)."""
    todo = iter(range(len(sentences)))
    latencies, answers, errors = [], [""] * len(sentences), 0

    async def client() -> None:
        nonlocal errors
        connection = await _Connection.open("127.0.0.1", port)
        try:
            for i in todo:
                start = time.perf_counter()
                status, body = await connection.post("/translate", {"q": sentences[i], "source": src, "target": tgt})
                latencies.append(time.perf_counter() - start)
                if status == 200:
                    answers[i] = json.loads(body)["translatedText"]
                else:
                    errors += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, answers, errors


def _serve(run: Path, port: int, batching: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "mt", "serve", "--run", str(run), "--port", str(port), "--max-queue", "1000"]
    server = subprocess.Popen(args + ([] if batching else ["--no-batching"]), stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"error: mt serve exited with status {server.returncode}") from None
            time.sleep(0.2)
    raise SystemExit("error: mt serve did not answer in 300 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test_2016_flickr")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 50])
    p.add_argument("--sentences", type=int, default=0, help="the split's first N sentences (default all)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--out")
    args = p.parse_args(argv)
    run = RunDir.of(args.run)
    sentences = list(run.split_texts(args.split)[0])[:args.sentences or None]
    rows = []
    rate, reference = _mt_translate(run.root, sentences)
    rows.append({"arm": "mt translate", "sentences": len(sentences), "sentences_per_s": round(rate, 1)})
    print(json.dumps(rows[-1]), flush=True)
    for batching in (True, False):
        _serve_arms(run, sentences, reference, batching, args, rows)
    rate = _mt_translate(run.root, sentences)[0]  # again: this CPU's speed drifts over minutes
    rows.append({"arm": "mt translate (again)", "sentences": len(sentences), "sentences_per_s": round(rate, 1)})
    print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


def _serve_arms(run: RunDir, sentences: list[str], reference: list[str], batching: bool, args, rows: list) -> None:
    """One server (batching on or off) under each number of clients; a row each."""
    src, tgt = run.meta()["src"], run.meta()["tgt"]
    server = _serve(run.root, args.port, batching)
    try:
        asyncio.run(_load(args.port, sentences[:20], 4, src, tgt))  # warm-up
        for clients in args.clients:
            cpu_server, cpu_self = _cpu_seconds(server.pid), time.process_time()
            start = time.perf_counter()
            latencies, answers, errors = asyncio.run(_load(args.port, sentences, clients, src, tgt))
            wall = time.perf_counter() - start
            rows.append({"arm": f"mt serve, batching {'on' if batching else 'off'}", "clients": clients,
                         "sentences": len(sentences), "sentences_per_s": round(len(sentences) / wall, 1),
                         "p50_ms": round(1000 * statistics.median(latencies), 1),
                         "p95_ms": round(1000 * statistics.quantiles(latencies, n=20)[18], 1),
                         "server_cpu_s": round(_cpu_seconds(server.pid) - cpu_server, 1),
                         "load_generator_cpu_s": round(time.process_time() - cpu_self, 1), "wall_s": round(wall, 1),
                         "errors": errors, "same_as_mt_translate": sum(a == b for a, b in zip(answers, reference))})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(60)

if __name__ == "__main__":
    raise SystemExit(main())

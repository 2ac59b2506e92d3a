"""Measure the web demo end to end (``make demo-bench``): start-up, browser latency, parallel API users.

    python -m bench.demo --run RUN [--port 7870] [--clients 20 50] [--screenshot docs/demo.png]

1. starts ``make demo`` (a fresh server process) and times until the page is served;
2. in headless system Chromium (Playwright), types a validation sentence, clicks Translate and times until the
   translation and the attention heatmap are shown (beam 5, the default), several times; optional screenshot;
3. sends N concurrent ``gradio_client`` requests of mixed lengths (1 to 8 validation sentences each, plus
   requests over the size cap, which must be refused with a message) and checks every answer;
4. reports the server's peak resident memory (VmHWM) and prints everything as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.memory import status_kib

__all__ = ["main"]


def _wait_until_served(url: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"error: the demo exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and b"<html" in r.read(2000).lower():
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: {url} not served after {timeout} s")


def _server_pids(root_pid: int) -> list[int]:
    """The make process and all its descendants."""
    pids, frontier = [root_pid], [root_pid]
    while frontier:
        parent = frontier.pop()
        for child in Path("/proc").glob("[0-9]*"):
            try:
                if int((child / "stat").read_text().split(") ")[1].split()[1]) == parent:
                    pids.append(int(child.name))
                    frontier.append(int(child.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def _peak_rss_mib(pids: list[int]) -> float:
    return round(max((status_kib(pid, "VmHWM") for pid in pids), default=0) / 1024, 1)


def _browser(url: str, sentences: list[str], screenshot: str | None) -> list[float]:
    from playwright.sync_api import expect, sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        raise SystemExit("error: no system chromium (apt-get install chromium)")
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        for sentence in sentences:
            page.locator("#source textarea").fill(sentence)
            old = page.locator("#translation textarea").input_value()
            start = time.perf_counter()
            page.locator("#translate").click()
            expect(page.locator("#translation textarea")).not_to_have_value(old, timeout=60_000)
            expect(page.locator("#heatmap img")).to_be_visible(timeout=60_000)
            times.append(time.perf_counter() - start)
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshot, full_page=True)
        browser.close()
    return times


def _load(url: str, texts: list[str], clients: int) -> dict:
    from gradio_client import Client

    def ask(text: str):
        start = time.perf_counter()
        try:
            out = Client(url, verbose=False).predict(text, api_name="/translate")
            return "ok", out[0], time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - a refusal is an expected answer for oversized requests
            return "refused", str(e), time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(ask, texts))
    total = time.perf_counter() - start
    return {"answers": answers, "seconds": round(total, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/multi30k-en-de")
    p.add_argument("--port", type=int, default=7870)
    p.add_argument("--clients", type=int, nargs="+", default=[20, 50], help="concurrent API users per round")
    p.add_argument("--browser-rounds", type=int, default=5)
    p.add_argument("--max-chars", type=int, default=5000)
    p.add_argument("--screenshot", help="save a full-page screenshot here (PNG)")
    args = p.parse_args(argv)

    from mt.run import RunDir

    val = RunDir.of(args.run).encoded()["val"]["src"]
    rng = random.Random(0)
    url = f"http://127.0.0.1:{args.port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(["make", "demo", f"RUN={args.run}", f"ARGS=--port {args.port} --max-chars {args.max_chars}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    report: dict = {"run": args.run}
    try:
        report["make_demo_to_page_s"] = round(_wait_until_served(url, proc), 2)
        browser_sentences = [val[i] for i in rng.sample(range(len(val)), args.browser_rounds)]
        times = _browser(url, browser_sentences, args.screenshot)
        report["browser_latency_s"] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3),
                                       "rounds": len(times)}
        for clients in args.clients:
            texts = [" ".join(rng.sample(val, rng.randint(1, 8))) for _ in range(clients - clients // 10)]
            texts += ["x" * (args.max_chars + 1)] * (clients // 10)  # over the cap: must be refused
            rng.shuffle(texts)
            result = _load(url, texts, clients)
            answers = result["answers"]
            oversized = [a for t, a in zip(texts, answers) if len(t) > args.max_chars]
            normal = [a for t, a in zip(texts, answers) if len(t) <= args.max_chars]
            report[f"concurrent_{clients}"] = {
                "requests": clients, "seconds": result["seconds"],
                "answered": sum(a[0] == "ok" and a[1].strip() != "" for a in normal), "of": len(normal),
                "oversized_refused": sum(a[0] == "refused" and "at most" in a[1] for a in oversized),
                "oversized": len(oversized),
                "latency_max_s": round(max(a[2] for a in answers), 2)}
        report["server_peak_rss_mib"] = _peak_rss_mib(_server_pids(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

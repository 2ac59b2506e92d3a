"""`mt serve` as a real server process answering real HTTP clients: LibreTranslate's client, concurrent callers
merged into batches, limits that answer 400/413/503 with one line, and a shutdown that finishes what is in flight.
The batcher's rules are also tested alone, in-process, where timing cannot blur them."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from demo.batcher import Batcher, Options, QueueFull
from mt.decode.formats import record
from mt.decode.translator import Translator

SERVER_ARGS = ["--max-wait-ms", "50", "--max-texts", "8", "--max-chars", "3000", "--max-bytes", "20000",
               "decode.precision=fp32"]
LONG = "the big red dog runs near the small cat and the blue man sits with a green child"


def start_server(run: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`mt serve` on a free port -> (the process, its URL), once it has said where it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "mt", "serve", "--run", str(run), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("mt serve: http://"), proc.stderr.read()[-2000:]
    return proc, line.split()[2]


@pytest.fixture(scope="module")
def server(trained_run):
    proc, url = start_server(trained_run, *SERVER_ARGS)
    yield url
    proc.terminate()
    proc.wait(60)


@pytest.fixture(scope="module")
def local(trained_run) -> Translator:
    translator = Translator.from_run(trained_run)
    translator.set_decoding(["decode.precision=fp32"])
    return translator


def call(url: str, path: str, payload: dict | None = None, form: dict | None = None,
         raw: bytes | None = None) -> tuple[int, dict | list, dict]:
    """A GET without a body, else a POST of ``form`` (form-encoded), ``raw`` bytes or ``payload`` (JSON)
    -> (status, decoded JSON body, headers)."""
    data, kind = None, "application/json"
    if form is not None:
        data, kind = urllib.parse.urlencode(form, doseq=True).encode(), "application/x-www-form-urlencoded"
    elif raw is not None:
        data = raw
    elif payload is not None:
        data = json.dumps(payload).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": kind} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_a_libretranslate_client_works_unchanged(server, local):
    from libretranslatepy import LibreTranslateAPI

    client = LibreTranslateAPI(server)
    assert client.translate("the dog runs", "en", "de") == local.translate("the dog runs")
    assert client.translate("a small cat sits", "auto", "de") == local.translate("a small cat sits")
    (detected,) = client.detect("the man eats near the woman")
    assert detected["language"] == "en" and 0 <= detected["confidence"] <= 100
    assert client.languages() == [{"code": "en", "name": "English", "targets": ["de"]},
                                  {"code": "de", "name": "German", "targets": []}]


def test_lists_alternatives_form_bodies_and_html(server, local):
    texts = ["the dog runs", "a red cat sits near the man"]
    status, body, _ = call(server, "/translate", {"q": texts, "source": "en", "target": "de", "alternatives": 2})
    assert status == 200 and body["translatedText"] == local.translate(texts)
    expected = local.translate_batch(texts, nbest=3)
    assert body["alternatives"] == [[text for _, text in t.nbest[1:3]] for t in expected]
    assert "detectedLanguage" not in body  # the source was given
    status, body, _ = call(server, "/translate", form={"q": texts, "source": "auto", "target": "de"})  # q twice
    assert status == 200 and body["translatedText"] == local.translate(texts)
    assert body["detectedLanguage"]["language"] == "en"
    status, body, _ = call(server, "/translate", {"q": "the <b>dog</b> runs", "format": "html"})
    assert status == 200 and body["translatedText"] == local.translate("the <b>dog</b> runs", markup="html")
    assert body["translatedText"].count("<b>") == 1


def test_the_batch_endpoint_answers_what_mt_translate_jsonl_writes(server, local):
    texts = ["the dog runs", "a cat sits. the man eats."]
    status, body, _ = call(server, "/translate_batch", {"texts": texts, "nbest": 2, "alignment": True, "beam": 2})
    expected = local.translate_batch(texts, beam=2, nbest=2, return_attention=True)
    assert status == 200 and body["translations"] == [record(i, t, 2, True) for i, t in enumerate(expected)]
    assert body["translations"][0]["alignment"]  # one sentence: aligned; two sentences: no alignment
    status, models, _ = call(server, "/models")
    assert status == 200 and models[0]["source"] == "en" and models[0]["target"] == "de"
    assert models[0]["parameters"] == local.model.num_parameters() and models[0]["checkpoint"] == "final.pt"
    status, spec, _ = call(server, "/openapi.json")
    assert {"/translate", "/translate_batch", "/detect", "/languages", "/health", "/models"} <= set(spec["paths"])
    assert "application/x-www-form-urlencoded" in spec["paths"]["/translate"]["post"]["requestBody"]["content"]


def test_concurrent_callers_are_merged_into_batches_and_each_gets_its_own_answer(server, local):
    sentences = [f"the {a} dog runs near the {b} cat" for a in ("big", "small", "red", "blue")
                 for b in ("green", "small", "big")]  # 12 callers at once
    _, before, _ = call(server, "/health")
    start, answers = threading.Barrier(len(sentences)), {}

    def caller(sentence: str) -> None:
        start.wait()
        answers[sentence] = call(server, "/translate", {"q": sentence, "source": "en", "target": "de"})

    threads = [threading.Thread(target=caller, args=(s,)) for s in sentences]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(answers[s][0] == 200 and answers[s][1]["translatedText"] == local.translate(s) for s in sentences)
    _, after, _ = call(server, "/health")
    assert after["requests"] - before["requests"] == len(sentences)
    assert after["batches"] - before["batches"] < len(sentences)  # some callers shared a decode batch


def test_bad_and_oversized_requests_are_one_line_errors(server):
    cases = [
        ({"raw": b'{"q": '}, 400, "the body is not valid JSON"),
        ({"raw": b"[1, 2]"}, 400, "the body must be a JSON object"),
        ({"payload": {"source": "en"}}, 400, "field 'q': Field required"),
        ({"payload": {"q": "x", "source": "fr"}}, 400, "source language 'fr' is not served; this model translates en"),
        ({"payload": {"q": "x", "target": "es"}}, 400, "target language 'es' is not served"),
        ({"payload": {"q": "x", "alternatives": -1}}, 400, "field 'alternatives'"),
        ({"payload": {"q": ["x"] * 9}}, 413, "9 texts in one request; the limit is 8"),
        ({"payload": {"q": "the dog " * 400}}, 413, "3,200 characters in one request; the limit is 3,000"),
        ({"payload": {"q": "x" * 30000}}, 413, "larger than this server's limit of 20,000 bytes"),
    ]
    for kwargs, status, message in cases:
        got, body, _ = call(server, "/translate", **kwargs)
        assert (got, list(body)) == (status, ["error"]) and message in body["error"], (kwargs, body)
        assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert call(server, "/nothing")[:2] == (404, {"error": "Not Found"})
    got, body, _ = call(server, "/translate_batch", {"texts": ["x"], "nbset": 2})
    assert got == 400 and body == {"error": "field 'nbset': Extra inputs are not permitted"}
    got, body, _ = call(server, "/translate_batch", {"texts": ["x"], "beam": 500})
    assert got == 400 and "at most 16" in body["error"]


def test_overload_is_503_and_shutdown_finishes_the_requests_in_flight(trained_run):
    """Each request fills a decode batch alone (decode.batch_tokens=60): 30 at once overflow a queue of 6, and
    those refused are told to retry. Then SIGTERM while requests are in flight: they are answered, then the
    process ends and refuses new connections."""
    proc, url = start_server(trained_run, "--max-queue", "6", "decode.batch_tokens=60")
    try:
        answers = []
        callers = [threading.Thread(target=lambda: answers.append(call(url, "/translate", {"q": [LONG] * 8})))
                   for _ in range(30)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(120)
        busy = [(body, headers) for status, body, headers in answers if status == 503]
        assert busy and len(busy) < 30 and all(status in (200, 503) for status, _, _ in answers)
        assert all("the server is busy" in body["error"] and headers["retry-after"] == "1" for body, headers in busy)

        answers.clear()
        callers = [threading.Thread(target=lambda: answers.append(call(url, "/translate", {"q": [LONG] * 8})))
                   for _ in range(3)]
        for t in callers:
            t.start()
        deadline = time.time() + 60
        while call(url, "/health")[1]["in_flight"] == 0:  # translating now, the others queued behind
            assert time.time() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        for t in callers:
            t.join(120)
        assert proc.wait(60) == -signal.SIGTERM  # uvicorn's way: finish, then end by the signal it was sent
        assert [status for status, _, _ in answers] == [200, 200, 200]
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url + "/health", timeout=5)
    finally:
        proc.kill()


def test_a_busy_port_is_one_line_before_the_model_loads(trained_run, server):
    port = server.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, "-m", "mt", "serve", "--run", str(trained_run), "--port", port],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: cannot serve on 127.0.0.1:{port}: ")
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the batcher alone

class _Gate:
    """A translate function that waits for the test to open it, recording each call's texts."""

    def __init__(self):
        self.open, self.calls = threading.Event(), []

    def __call__(self, texts: list[str], options: Options) -> list[str]:
        self.open.wait(10)
        self.calls.append(list(texts))
        return [f"{t}!" for t in texts]


def test_the_batcher_merges_by_options_within_the_token_budget_and_refuses_past_the_queue():
    async def scenario():
        gate = _Gate()
        batcher = Batcher(gate, lambda texts: sum(len(t.split()) for t in texts), batch_tokens=6, max_wait_s=0.02,
                          max_queue=5)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], Options()))  # taken at once; blocks the worker
        await asyncio.sleep(0.1)
        queued = [asyncio.ensure_future(batcher.submit([text], options)) for text, options in
                  [("b c", Options()), ("d", Options(beam=2)), ("e f g", Options()), ("h i", Options())]]
        late = asyncio.ensure_future(batcher.submit(["late"], Options(beam=3), timeout_s=0.2))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):  # 5 waiting
            await batcher.submit(["j"], Options())
        with pytest.raises(asyncio.TimeoutError):  # past its timeout: dropped from the queue, never translated
            await late
        gate.open.set()
        results = await asyncio.gather(first, *queued)
        await batcher.stop()
        return gate.calls, results, batcher.stats

    calls, results, stats = asyncio.run(scenario())
    assert results == [["a!"], ["b c!"], ["d!"], ["e f g!"], ["h i!"]]
    # in arrival order, those with equal options together while they fit 6 tokens; beam=2 alone
    assert calls == [["a"], ["b c", "e f g"], ["d"], ["h i"]]
    assert stats["requests"] == 5 and stats["batches"] == 4 and stats["in_flight"] == 0

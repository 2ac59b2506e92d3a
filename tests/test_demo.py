"""The Gradio demo: the translate function, a real server with gradio_client, and a real browser (Chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from demo.app import build_app, model_facts, translate_text  # noqa: E402
from mt.cli import main  # noqa: E402
from mt.decode.translator import Translator  # noqa: E402
from mt.run import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def translator(trained_run: Path) -> Translator:
    return Translator.from_run(trained_run, threads=1)


def test_translate_text_matches_the_translator(translator: Translator):
    text, rows, figure, status = translate_text(translator, "the dog runs\na red cat sits", beam=3, nbest=2)
    expected = [t.text for t in translator.translate_batch(["the dog runs", "a red cat sits"], beam=3)]
    assert text.split("\n") == expected
    assert [r[:2] for r in rows] == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert rows[0][3] == expected[0] and rows[0][2] >= rows[1][2]  # best first
    assert figure is not None and figure.axes[0].get_xlabel() == "source subwords"
    assert "2 sentences" in status and "beam 3" in status


def test_empty_and_oversized_input_get_messages(translator: Translator):
    assert translate_text(translator, "  \n ")[0:3] == ("", [], None)
    assert "Type or paste" in translate_text(translator, "")[3]
    with pytest.raises(gr.Error, match="at most 50 at once"):
        translate_text(translator, "x" * 51, max_chars=50)


def test_hostile_text_in_the_demo(translator: Translator):
    text = "\u202eevil\u202c 😀\x00\x07 e\u0301\u0301 \ue000 " + "dog " * 3000
    out, rows, _, _ = translate_text(translator, text[:5000])
    assert isinstance(out, str) and rows


def test_model_facts(trained_run: Path, translator: Translator):
    facts = model_facts(RunDir.of(trained_run), translator)
    assert "en → de" in facts and f"{translator.facts['parameters']:,}" in facts and "updates" in facts


def test_demo_without_a_trained_model_is_one_line(trained_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "untrained"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    assert main(["demo", "--run", str(run), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "make train" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run: Path, translator: Translator):
    app = build_app(translator, RunDir.of(trained_run), max_chars=200, concurrency=2)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_gradio_client_round_trip(server: str, translator: Translator):
    from gradio_client import Client

    client = Client(server, verbose=False)
    result = client.predict("the big dog runs", api_name="/translate")
    assert result[0] == translator.translate_batch(["the big dog runs"])[0].text != ""
    assert "1 sentence" in result[3]
    tagged = client.predict("the <b>big</b> dog runs", 5, 1, "html", api_name="/translate")[0]
    assert tagged == translator.translate_batch(["the <b>big</b> dog runs"], markup="html")[0].text
    assert tagged.count("<b>") == tagged.count("</b>") == 1
    with pytest.raises(Exception, match="at most 200"):
        client.predict("dog " * 100, api_name="/translate")


def test_concurrent_requests_are_all_answered(server: str, translator: Translator):
    from gradio_client import Client

    sentences = [" ".join(["the", "red", "dog", "runs", "near", "a", "cat"][: 2 + i % 6]) for i in range(20)]
    expected = [t.text for t in translator.translate_batch(sentences)]

    client = Client(server, verbose=False)
    jobs = [client.submit(sentence, api_name="/translate") for sentence in sentences]  # 20 requests in flight
    answers = [job.result(timeout=120)[0] for job in jobs]
    assert answers == expected


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.browser
def test_real_browser_translates_and_draws_the_heatmap(server: str, translator: Translator, tmp_path: Path):
    """Headless system Chromium driven by Playwright: type, click Translate, see translation and heatmap."""
    executable = _chromium()
    if executable is None:
        if os.environ.get("MT_REQUIRE_BROWSER"):
            pytest.fail("MT_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
        pytest.skip("no system Chromium (Debian package `chromium`); .ci/run installs it")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(server)
            page.locator("#source textarea").fill("the small cat jumps over a dog")
            start = time.perf_counter()
            page.locator("#translate").click()
            translation = page.locator("#translation textarea")
            expect(translation).not_to_have_value("", timeout=30_000)
            expect(page.locator("#heatmap img")).to_be_visible(timeout=30_000)
            print(f"browser round trip {time.perf_counter() - start:.2f} s")
            assert translation.input_value() == translator.translate_batch(["the small cat jumps over a dog"])[0].text
            expect(page.locator("#nbest")).to_contain_text("katze")
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_serves_an_exported_model_file(trained_run: Path, tmp_path: Path):
    """`mt demo --model FILE`: the page is built from the file alone (no run folder: no examples, its facts)."""
    assert main(["export", "--run", str(trained_run), "--output", str(tmp_path / "m.mt")]) == 0
    translator = Translator.from_file(tmp_path / "m.mt", threads=1)
    assert "exported model file" in model_facts(None, translator) and "en → de" in model_facts(None, translator)
    assert isinstance(build_app(translator, None), gr.Blocks)
    assert translate_text(translator, "the dog runs", beam=2)[0] == translator.translate_batch(["the dog runs"], beam=2)[0].text


class _Slow:
    """A translator stand-in that records how many translations run at once (each takes 0.4 s)."""

    def __init__(self, translator: Translator):
        self.inner, self.running, self.most = translator, 0, 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def translate_batch(self, *args, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.4)
        with self.lock:
            self.running -= 1
        raise RuntimeError(f"boom in {self.inner.facts.get('checkpoint')}")


def test_the_concurrency_setting_holds_and_errors_tell_no_internals(trained_run: Path, translator: Translator):
    """--concurrency N: N translations at once through the API (a guard: the reported fall to 1 after an Enter
    press did not show through API calls alone); an error shows neither the exception's class nor the run's path."""
    from gradio_client import Client

    slow = _Slow(translator)
    app = build_app(slow, RunDir.of(trained_run), max_chars=200, concurrency=3)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit(f"the dog runs {i}", api_name="/translate") for i in range(6)]
        messages = []
        for job in jobs:
            with pytest.raises(Exception) as caught:
                job.result(timeout=60)
            messages.append(str(caught.value))
    finally:
        app.close()
    assert slow.most == 3
    assert all("Translation failed" in m and "RuntimeError" not in m and str(trained_run) not in m for m in messages)


def test_a_request_too_large_is_refused_on_arrival(trained_run: Path, translator: Translator):
    """`mt demo --max-chars N`: a body larger than N characters could need is answered 413 before Gradio reads or
    queues it (API clients bypass the text box's own limit)."""
    import urllib.error
    import urllib.request

    from demo.app import serve

    port = _free_port()
    app = serve(translator, RunDir.of(trained_run), port=port, max_chars=200, block=False)
    try:
        body = b'{"data": ["' + b"x" * 200_000 + b'"], "fn_index": 0}'
        request = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/queue/join", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
        assert b"larger than this server's limit of 66,736 bytes" in refused.value.read()
    finally:
        app.close()

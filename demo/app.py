"""The Gradio web app (``mt demo --run RUN``): translate in the browser, see the n-best list and the attention.

All translation goes through ``mt.decode.translator.Translator`` (loaded once per server); this module only lays out
the page and turns results into tables and a heatmap. The translate function is also an API endpoint named
``translate``: ``gradio_client.Client(url).predict("A dog runs.", api_name="/translate")[0]`` is the translation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo

import gradio as gr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from demo.limits import BodyLimit  # noqa: E402
from demo.model_info import evaluations  # noqa: E402
from mt.decode.sentences import Layout, split_text  # noqa: E402
from mt.decode.translator import Translation, Translator  # noqa: E402
from mt.run import RunDir  # noqa: E402

__all__ = ["DEFAULT_MAX_CHARS", "build_app", "model_facts", "translate_text"]

log = logging.getLogger("mt")
DEFAULT_MAX_CHARS = 5000
MAX_SENTENCES = 100  # a paste of more lines than this is cut, with a message


def attention_figure(t: Translation) -> Figure | None:
    """Heatmap of the best hypothesis' attention: target subwords (rows) x source subwords (columns)."""
    if t.attention is None or not t.src_pieces or not t.tgt_pieces:
        return None
    weights = t.attention.float().cpu().numpy()[: len(t.tgt_pieces), : len(t.src_pieces)]  # (T, S)
    fig = Figure(figsize=(min(2 + 0.45 * len(t.src_pieces), 14), min(1.5 + 0.35 * len(t.tgt_pieces), 12)))
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(t.src_pieces)), t.src_pieces, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(t.tgt_pieces)), t.tgt_pieces, fontsize=9)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("translation subwords")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def translate_text(translator: Translator, text: str, beam: int = 5, nbest: int = 3,
                   max_chars: int = DEFAULT_MAX_CHARS, markup: str = "none") -> tuple[str, list[list], Figure | None, str]:
    """-> (translation, n-best rows [sentence, rank, score, text], attention heatmap of the first sentence,
    status message). Too-long input raises ``gr.Error`` (shown in the page; an error for API clients).
    ``markup`` html or markdown: the text is translated whole, its tags kept (one n-best row, no heatmap)."""
    text = text or ""
    if len(text) > max_chars:
        raise gr.Error(f"The text has {len(text):,} characters; this demo translates at most {max_chars:,} at once. "
                       "Shorten it, or use `mt translate` for files.", print_exception=False)
    if markup in ("html", "markdown") and text.strip():
        result = _translate(translator, [text.strip()], beam=max(1, int(beam)), markup=markup)[0]
        return result.text, [[1, 1, round(result.score, 3), result.text]], None, f"Translated the {markup} text."
    layout = split_text(text.strip(), translator.src_language)  # paragraphs and spacing come back as they were
    sentences = layout.sentences
    if not sentences:
        return "", [], None, "Type or paste some text to translate."
    note = ""
    if len(sentences) > MAX_SENTENCES:
        note = f" Only the first {MAX_SENTENCES} of {len(sentences)} sentences were translated."
        sentences = sentences[:MAX_SENTENCES]
        layout = Layout(sentences, layout.gaps[:MAX_SENTENCES] + [""])
    beam = max(1, int(beam))
    nbest = max(1, min(int(nbest), beam))
    results = _translate(translator, sentences, beam=beam, nbest=nbest, return_attention=True)
    rows = [[i + 1, rank + 1, round(score, 3), hyp] for i, r in enumerate(results)
            for rank, (score, hyp) in enumerate(r.nbest)]
    status = (f"Translated {len(sentences)} sentence{'s' if len(sentences) > 1 else ''} with "
              f"{'greedy search' if beam == 1 else f'beam {beam}'}. The heatmap shows the first sentence.{note}")
    return layout.join([r.text for r in results]), rows, attention_figure(results[0]), status


def _translate(translator: Translator, texts: list[str], **options) -> list:
    try:
        return translator.translate_batch(texts, **options)
    except Exception:  # noqa: BLE001 - the page gets one line without internals; the server log keeps the details
        log.exception("translation failed")
        raise gr.Error("Translation failed on this input; the server's log has the details. Please report it.",
                       print_exception=False) from None


def model_facts(run: RunDir | None, translator: Translator) -> str:
    """Markdown: languages, size, training progress, and test scores (RUN/eval, or those an exported model file
    carries)."""
    f = translator.facts
    lines = [f"**Languages:** {f.get('src', '?')} → {f.get('tgt', '?')}",
             f"**Parameters:** {f.get('parameters', 0):,}"]
    if f.get("train_minutes") is not None:
        lines.append(f"**Training:** {f['train_minutes']} min, {f.get('step', '?')} updates, {f.get('epoch', '?')} epochs")
    if f.get("best_val_bleu") is not None and f["best_val_bleu"] >= 0:
        lines.append(f"**Best validation BLEU (greedy):** {f['best_val_bleu']:.2f}")
    for name, r in evaluations(run, f).items():
        try:
            lines.append(f"**{name}:** BLEU {r['bleu']:.2f}, chrF {r['chrf']:.2f} (beam {r.get('beam', '?')})")
        except (KeyError, TypeError, ValueError):
            log.warning("skipping unreadable evaluation report %s", name)
    where = f"in `{run.root}`" if run else "(exported model file)"
    lines.append(f"**Checkpoint:** `{Path(f.get('checkpoint', '?')).name}` {where}")
    return "  \n".join(lines)


def _examples(run: RunDir | None, n: int = 6) -> list[str]:
    """A few validation sources of moderate length (the page's clickable examples); none for a model file."""
    if run is None:
        return []
    try:
        sources = run.encoded()["val"]["src"]
    except Exception:  # noqa: BLE001 - examples are a nicety; a damaged cache must not stop the demo
        return []
    picked = [s for s in sources if 5 <= len(s.split()) <= 16]
    step = max(1, len(picked) // n)
    return picked[::step][:n]


def build_app(translator: Translator, run: RunDir | None, max_chars: int = DEFAULT_MAX_CHARS,
              concurrency: int = 2) -> gr.Blocks:
    f = translator.facts
    title = f"Translate {f.get('src', '')} → {f.get('tgt', '')}"
    default_beam = translator.cfg.decode.beam

    def translate(text: str, beam: float = default_beam, nbest: float = 3, markup: str = "none"):
        return translate_text(translator, text, int(beam), int(nbest), max_chars, markup)

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nA bidirectional-LSTM encoder and an attentional LSTM decoder. One sentence per "
                    f"line (or several sentences in one paragraph); up to {max_chars:,} characters.")
        with gr.Row():
            with gr.Column(scale=3):
                source = gr.Textbox(label="Source text", lines=4, max_lines=20, elem_id="source", max_length=max_chars,
                                    placeholder="Type a sentence and press Enter (Shift+Enter for a new line)")
                with gr.Row():
                    beam = gr.Slider(1, 10, value=default_beam, step=1, label="Beam size (1 = greedy)")
                    nbest = gr.Slider(1, 10, value=3, step=1, label="n-best entries per sentence")
                    markup = gr.Radio(["none", "html", "markdown"], value="none", label="Markup in the text",
                                      elem_id="markup")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
                target = gr.Textbox(label="Translation", lines=4, interactive=False, elem_id="translation")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                gr.Markdown(model_facts(run, translator), elem_id="facts")
        examples = _examples(run)
        if examples:
            gr.Examples(examples=[[e] for e in examples], inputs=[source], label="Examples (validation split)")
        nbest_table = gr.Dataframe(headers=["sentence", "rank", "score", "translation"], label="n-best list",
                                   interactive=False, wrap=True, elem_id="nbest")
        heatmap = gr.Plot(label="Attention (first sentence)", elem_id="heatmap")
        outputs = [target, nbest_table, heatmap, status]
        button.click(translate, [source, beam, nbest, markup], outputs, api_name="translate",
                     concurrency_limit=concurrency, concurrency_id="translate")
        source.submit(translate, [source, beam, nbest, markup], outputs, api_name=False, concurrency_limit=concurrency,
                      concurrency_id="translate")  # each event its limit: Gradio applies a group's lowest
    app.queue(max_size=256)
    return app


def serve(translator: Translator, run: RunDir | None, host: str = "127.0.0.1", port: int = 7860,
          max_chars: int = DEFAULT_MAX_CHARS, concurrency: int = 2, block: bool = True) -> gr.Blocks:
    """Serve the app for an already loaded model (``mt demo``); ``block=False`` returns once it is up."""
    app = build_app(translator, run, max_chars, concurrency)
    # a request larger than the longest text allowed could be (6 bytes a character, as JSON escapes, and room for
    # the other fields) is refused on arrival, before Gradio queues it (413)
    limit = Middleware(BodyLimit, max_bytes=6 * max_chars + 65_536)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=False, share=False,
               footer_links=["api"], theme=gr.themes.Soft(), app_kwargs={"middleware": [limit]})
    return app

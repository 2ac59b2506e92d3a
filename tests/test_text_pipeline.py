"""The text around the model: sentences and paragraphs, protected spans, re-casing (mt.decode.pipeline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mt.decode.casing import recase, uncase
from mt.decode.markup import parse
from mt.decode.pipeline import TextPipeline
from mt.decode.protect import Protected, Span, load_glossary, protect, restore
from mt.decode.sentences import cut_to_length, split_text
from mt.decode.translator import Translator
from mt.errors import MTError

KNOWN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZäöüß.,;:!?()'-0123456789")


@pytest.mark.parametrize("text, sentences, joined", [
    ("A dog runs.  A cat sits!\n\nWhy? yes", ["A dog runs.", "A cat sits!", "Why?", "yes"],
     "1  2\n\n3 4"),
    ("  line one\n\n  line two  \n", ["line one", "line two"], "  1\n\n  2  \n"),
    ("first line\nsecond line", ["first line", "second line"], "1\n2"),
    ("Dr. Smith left at 3.5 p.m. today.", ["Dr. Smith left at 3.5 p.m. today."], "1"),
    ("東京は大きい。とても。", ["東京は大きい。", "とても。"], "12"),
    ("   \n\t", [], "   \n\t"),
])
def test_sentences_come_back_with_the_spacing_and_paragraphs_of_the_input(text, sentences, joined):
    layout = split_text(text, "en")
    assert layout.sentences == sentences
    assert layout.join([str(i + 1) for i in range(len(sentences))]) == joined
    assert layout.join(sentences) == text  # nothing but the sentences is changed


def test_a_stretch_without_sentence_ends_is_cut_near_the_training_length_and_nothing_is_lost():
    words = ("the man is using the telephone A woman stands holding a bike A child is standing on some rocks "
             "a person rides in the snow").split()
    text = " ".join(words * 3)
    count = lambda texts: [len(t) // 3 + 1 for t in texts]  # noqa: E731 - about a piece per three letters
    parts = cut_to_length(text, count, 12)
    assert " ".join(parts) == text
    assert len(parts) > 3 and all(6 <= sum(count(p.split(" "))) <= 18 for p in parts[:-1])
    assert sum(p.split(" ")[0][0].isupper() for p in parts[1:]) >= len(parts) // 2  # cut before a capital
    assert cut_to_length("a short one", count, 12) == ["a short one"]


@pytest.mark.parametrize("sentence, model_text, spans", [
    ("Flight LH 4217 leaves at 07:45.", "Flight leaves at.", [("LH 4217", 1), ("07:45", 3)]),
    ("Write to zoe.smith@example.com today", "Write to today", [("zoe.smith@example.com", 2)]),
    ("See https://example.org/a?b=1&c=(2).", "See.", [("https://example.org/a?b=1&c=(2)", 1)]),
    ("Łódź: a dog runs (東京).", "a dog runs.", [("Łódź:", 0), ("(東京)", 3)]),
    ("It costs $19.99, not 20%.", "It costs, not.", [("$19.99", 2), ("20%", 3)]),  # after "not", before "."
    ("Call +49 30 1234567 or walk 2.7 km.", "Call or walk.", [("+49 30 1234567", 1), ("2.7 km", 3)]),
    ("Nguyễn Thị Hương smiles", "smiles", [("Nguyễn Thị Hương", 0)]),
    ("a dog runs", "a dog runs", []),
    ("東京 2026", "", [("東京 2026", 0)]),
])
def test_protected_spans_are_taken_out_with_their_frame(sentence, model_text, spans):
    p = protect(sentence, KNOWN)
    assert p.text == model_text
    assert [(s.text, s.word) for s in p.spans] == spans


def test_a_number_the_vocabulary_holds_stays_with_the_model():
    in_vocabulary = {"2", "30"}.__contains__
    assert protect("Two girls (2) play", KNOWN, in_vocabulary).spans == []
    assert [s.text for s in protect("Call +49 30 1234567", KNOWN, in_vocabulary).spans] == ["+49 30 1234567"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["the", "dog", "(", ")", "4217", "Łódź", ":", ".", "http://x.org/a", "a@b.cd",
                                 "((", "))", ",", "+", "2.7", "km", " ", "東京"]), max_size=14))
def test_any_sentence_comes_back_with_every_span(words):
    sentence = " ".join(" ".join(words).split())
    p = protect(sentence, KNOWN)
    out = restore(p, [], None, [], p.text)
    assert all(span.text in out for span in p.spans)
    assert sorted(out.replace(" ", "")) == sorted(sentence.replace(" ", "")) or not p.text


def test_spans_go_back_where_the_attention_puts_their_neighbours():
    p = protect("the dog (4217) runs near Łódź", KNOWN)
    assert p.text == "the dog runs near" and [(s.text, s.word) for s in p.spans] == [("(4217)", 2), ("Łódź", 4)]
    source = ["▁the", "▁dog", "▁runs", "▁ne", "ar"]
    pieces = ["▁der", "▁hund", "▁rennt", "▁nahe", "."]
    attention = torch.zeros(len(pieces) + 1, len(source))  # output piece i attends to source word i
    for i, s in enumerate([0, 1, 2, 3, 3, 3]):
        attention[i, s] = 1.0
    assert restore(p, pieces, attention, source, "der hund rennt nahe.") == "der hund (4217) rennt nahe Łódź."
    reordered = attention.clone()[[2, 0, 1, 3, 4, 5]]  # "rennt der hund": the span still follows "dog"'s words
    assert restore(p, ["▁rennt", "▁der", "▁hund", "▁nahe", "."], reordered, source,
                   "rennt der hund nahe.") == "rennt der hund (4217) nahe Łódź."
    assert p.fallbacks == 0


def test_without_attention_spans_go_by_relative_position_and_are_counted():
    p = protect("the dog (4217) runs near the cat", KNOWN)
    out = restore(p, [], None, [], "der hund rennt nahe der katze")
    assert out == "der hund (4217) rennt nahe der katze" and p.fallbacks == 1
    assert restore(Protected("x", [Span("A1", 0, "number")]), [], None, [], "y") == "A1 y"  # first: no guessing


@pytest.mark.parametrize("text, model_text, style, back", [
    ("A BROWN DOG IS RUNNING.", "A brown dog is running.", "upper", "EIN BRAUNER HUND RENNT."),
    ("A Young Boy Swings A Bat", "A young boy swings a bat", "title", "Ein Kleiner Junge Schwingt Einen Schläger"),
    ("NASA", "NASA", "", "ein kleiner junge schwingt einen schläger"),
    ("The dog runs", "The dog runs", "", "ein kleiner junge schwingt einen schläger"),
])
def test_headlines_are_translated_in_sentence_case_and_re_cased(text, model_text, style, back):
    assert uncase(text) == (model_text, style)
    assert recase("ein kleiner junge schwingt einen schläger" if style != "upper" else "ein brauner hund rennt.",
                  style) == back


@pytest.mark.parametrize("text, markup, plain, tags", [
    ("A <b>big</b> dog.", "html", "A big dog.", [(2, "<b>", "open"), (5, "</b>", "close")]),
    ("x &amp; y<br/><!-- c --><code>a<b</code>", "html", "x & y", [(5, "<br/>", "void"), (5, "<!-- c -->", "void"),
                                                                 (5, "<code>a<b</code>", "void")]),
    ("a < b > c", "html", "a < b > c", []),
    ("# **Big** [dog](http://x.org) `c_d` snake_case", "markdown", "Big dog  snake_case",
     [(0, "# ", "void"), (0, "**", "open"), (3, "**", "close"), (4, "[", "open"), (7, "](http://x.org)", "close"),
      (8, "`c_d`", "void")]),
])
def test_markup_is_taken_out_of_the_text(text, markup, plain, tags):
    got_plain, got = parse(text, markup)
    assert got_plain == plain and [(t.at, t.text, t.role) for t in got] == tags


HOSTILE = ["<b>unclosed dog runs", "the dog</i> runs", "<b><i>the dog</b></i>", "<a href='x>y'>the</a> dog",
           "<<b>>the dog<</b>>", "<b></b><i></i>", "<p>the. dog.</p><p>a cat.</p>", "<script>the dog</script> the cat",
           "&lt;b&gt;the dog&lt;/b&gt; &#x1F600; &bogus;", "<b>the <i>red</i> dog</b> runs near <br> the cat."]


def test_glossary_terms_are_replaced_by_their_targets(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_text("# en-de\nbike\tVelo\nred cat\tRotkatze\nNASA\n\n", encoding="utf-8")
    glossary = load_glossary(str(path))
    p = protect("Bike and red cat near NASA and nasa", KNOWN, glossary=glossary)
    assert p.text == "and near and nasa"  # a term with capitals matches only as written
    assert [(s.text, s.output, s.word) for s in p.spans] == [("Bike", "Velo", 0), ("red cat", "Rotkatze", 1),
                                                             ("NASA", "NASA", 2)]
    assert restore(p, [], None, [], "und nahe und nasa") == "Velo und Rotkatze nahe NASA und nasa"
    only = protect("a bike at 07:45", KNOWN, glossary=glossary, only_glossary=True)
    assert [s.output for s in only.spans] == ["Velo"] and only.text == "a at 07:45"
    path.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(MTError, match=r"terms.tsv line 1: expected"):
        load_glossary(str(path))


def test_html_block_elements_end_sentences_even_without_spaces():
    pipeline = TextPipeline("en", KNOWN, markup="html")
    doc = pipeline.prepare("<ul><li>one dog</li><li>two cats</li></ul><p>A dog.</p><p>A cat<br>runs.</p>")
    assert doc.layout.sentences == ["one dog", "two cats", "A dog.", "A cat", "runs."]
    out = doc.layout.join([pipeline.finish(s, s.protected.text.upper(), [], None, []) for s in doc.sentences])
    assert out == "<ul><li>ONE DOG</li><li>TWO CATS</li></ul><p>A DOG.</p><p>A CAT<br>RUNS.</p>"


def test_html_text_is_escaped_and_tags_are_not():
    pipeline = TextPipeline("en", KNOWN, markup="html")
    doc = pipeline.prepare("a <b>dog</b> &amp; a cat")
    (sentence,) = doc.sentences
    assert sentence.source == "a dog & a cat" and sentence.protected.text == "a dog & a cat"
    out = pipeline.finish(sentence, "ein hund & eine <katze>", [], None, [])
    assert out.count("<b>") == out.count("</b>") == 1 and "&amp;" in out and "&lt;katze&gt;" in out


@pytest.fixture(scope="module")
def translator(trained_run: Path) -> Translator:
    return Translator.from_run(trained_run, threads=1)


def test_the_translator_copies_spans_keeps_paragraphs_and_re_cases(translator):
    """The tiny model knows 20 lower-case words: numbers, links, unseen scripts and capitals are beyond it."""
    plain = translator.translate_batch(["the dog runs near the cat", "a red cat sits"], beam=2)
    messy = translator.translate_batch(["the dog runs (4217) near the cat", "THE DOG RUNS NEAR THE CAT",
                                  "the dog runs near the cat.\n\na red cat sits. https://example.org/x?y=1",
                                  "Łódź"], beam=2)
    assert "(4217)" in messy[0].text and messy[0].text.replace(" (4217)", "") == plain[0].text
    assert messy[0].text.index("(4217)") > 0 and messy[0].spans == [{"text": "(4217)", "kind": "number"}]
    assert messy[1].text == plain[0].text.upper()
    paragraphs = messy[2].text.split("\n\n")
    assert len(paragraphs) == 2 and paragraphs[0].startswith(plain[0].text)
    assert paragraphs[1].endswith("https://example.org/x?y=1") and messy[2].sentences[2] == "https://example.org/x?y=1"
    assert messy[3].text == "Łódź"


def test_switched_off_the_pipeline_translates_the_normalised_text_whole(translator):
    line = "The dog runs (4217).  A cat sits."
    on = translator.translate_batch([line], beam=1)[0]
    translator.set_decoding(["decode.split_sentences=false", "decode.protect_spans=false", "decode.recase=false"])
    try:
        off = translator.translate_batch([line], beam=1)[0]
    finally:
        translator.set_decoding(["decode.split_sentences=true", "decode.protect_spans=true", "decode.recase=true"])
    assert off.sentences == [] and off.spans == [] and off.model_input is None
    assert on.sentences == ["The dog runs (4217).", "A cat sits."] and "(4217)" in on.text


def test_jsonl_reports_the_sentences_and_spans(trained_run, tmp_path, capsys):
    from mt.cli import main

    src = tmp_path / "in.txt"
    src.write_text("the dog runs 42. a cat sits\n", encoding="utf-8")
    assert main(["translate", "--run", str(trained_run), "--input", str(src), "--format", "jsonl", "--beam", "1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sentences"] == ["the dog runs 42.", "a cat sits"]
    assert record["protected"] == [{"text": "42", "kind": "number"}] and "42" in record["translation"]


@pytest.mark.parametrize("markup", ["html", "markdown"])
def test_tags_come_back_in_order_around_the_translated_words(translator, markup):
    translator.set_decoding([f"decode.markup={markup}"])
    try:
        if markup == "html":
            lines = ["the <b>red</b> dog runs near the cat", "<p>the dog runs.</p>\n<p>a <i>red</i> cat sits.</p>",
                     *HOSTILE]
        else:
            lines = ["the **red** dog runs near [the cat](http://x.org)", "# the dog\n\n- a *red* cat sits"]
        out = translator.translate_batch(lines, beam=2)
        plain = translator.translate_batch([parse(x, markup)[0] for x in lines], beam=2)
    finally:
        translator.set_decoding(["decode.markup=none"])
    for line, o in zip(lines, out):
        assert [t.text for t in parse(line, markup)[1]] == [t.text for t in parse(o.text, markup)[1]], (line, o.text)
    if markup == "html":
        assert re.search(r"<b>\S+</b>", out[0].text)  # the element still holds a word
        alone = translator.translate_batch([lines[0]], beam=2, markup="html")[0]  # tags, no span: attention all the same
        assert alone.text == out[0].text and alone.fallbacks == 0  # placed by attention, not by relative position
        assert out[0].text.replace("<b>", "").replace("</b>", "") == plain[0].text
        assert out[1].text.startswith("<p>") and "</p>\n<p>" in out[1].text and out[1].text.endswith("</p>")
        assert "<" not in out[2 + 8].text and "<script>the dog</script>" in out[2 + 7].text  # text stays text
    else:
        assert re.search(r"\*\*\S+\*\*", out[0].text) and out[0].text.endswith("](http://x.org)")
        assert out[1].text.startswith("# ") and "\n\n- " in out[1].text


def test_the_glossary_holds_in_translation(trained_run, tmp_path, capsys):
    from mt.cli import main

    terms, src = tmp_path / "terms.tsv", tmp_path / "in.txt"
    terms.write_text("dog\tKöter\ncat\n", encoding="utf-8")
    src.write_text("the dog runs near the cat\na red dog sits\nthe man eats\n", encoding="utf-8")
    assert main(["translate", "--run", str(trained_run), "--input", str(src), "--glossary", str(terms)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Köter" in out[0] and "cat" in out[0] and "Köter" in out[1] and "Köter" not in out[2]

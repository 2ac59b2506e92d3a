"""Inline markup (HTML or Markdown) kept around the words it marks, and never shown to the model.

``parse`` takes the markup out of a text: the plain text the model will translate, and each tag with its offset
in that plain text. After translation, a tag at the edge of a sentence goes back at the same edge, a tag inside a
sentence at the output word boundary its neighbours were aligned to (``mt.decode.align``), an opening tag glued to
the word after it, a closing tag to the word before it. Tags keep their order, so well-formed input gives
well-formed output:

    plain, tags = parse("A <b>big</b> dog.", "html")   # "A big dog.", [Tag(2, "<b>", "open"), Tag(5, "</b>", "close")]
    ... "Ein <b>großer</b> Hund."

HTML: tags and comments; the contents of ``<script>``, ``<style>``, ``<code>`` and ``<pre>`` are copied, not
translated; entities are decoded for the model and the translation is escaped again. Markdown: ``**bold**``,
``*emphasis*``, ``_emphasis_``, ``[links](url)``, ``![images](src)`` and ``` `code` ``` (copied), and the markers at
the start of a line (``#`` headings, ``>`` quotes, ``-``/``*``/``1.`` list items).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["MARKUPS", "Tag", "escape", "parse"]

MARKUPS = ("none", "html", "markdown")


@dataclass(frozen=True)
class Tag:
    at: int  # offset in the plain text
    text: str  # as in the input
    role: str  # "open", "close" or "void" (copied where it stood: <br>, an image, code)
    block: bool = False  # an HTML block element (<p>, <li>, <br> ...): the text on either side is not one sentence


_HTML = re.compile(r"<!--.*?-->|<(script|style|code|pre)\b[^<>]*>.*?</\1\s*>|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>",
                   re.S | re.I)
_VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "source", "area", "base", "col", "embed", "track"}
_BLOCK = {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
          "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
          "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "title", "body", "html", "head", "script",
          "style"}
_MARKDOWN = re.compile(
    r"(?P<void>!\[[^\]\n]*\]\([^)\s]*\)|`[^`\n]+`|<https?://[^>\s]+>)"
    r"|(?P<prefix>^[ \t]*(?:#{1,6}|>|[-*+]|\d{1,3}[.)])[ \t]+)"
    r"|(?P<link_open>\[)(?=[^\]\n]*\]\([^)\s]*\))|(?P<link_close>\]\([^)\s]*\))"
    r"|(?P<strong>\*\*|__)|(?P<em>(?<![\w*])[*_](?=\S)|(?<=\S)[*_](?![\w*]))",
    re.M)


def parse(text: str, markup: str) -> tuple[str, list[Tag]]:
    """``text`` -> (its plain text, its tags in order). ``markup``: "html" or "markdown"."""
    if markup == "html":
        return _parse(text, _HTML, _html_role, html.unescape)
    if markup == "markdown":
        return _parse_markdown(text)
    raise ValueError(f"unknown markup '{markup}'; valid: {', '.join(MARKUPS)}")


def escape(text: str, markup: str) -> str:
    """Plain text (a translation) as it is written in ``markup``."""
    return html.escape(text, quote=False) if markup == "html" else text


def _parse(text: str, pattern: re.Pattern, role, unescape) -> tuple[str, list[Tag]]:
    plain, tags, at = "", [], 0
    for m in pattern.finditer(text):
        plain += unescape(text[at:m.start()])
        name = re.match(r"</?([A-Za-z][A-Za-z0-9-]*)", m.group())
        tags.append(Tag(len(plain), m.group(), role(m), bool(name) and name.group(1).lower() in _BLOCK))
        at = m.end()
    return plain + unescape(text[at:]), tags


def _html_role(m: re.Match) -> str:
    tag = m.group()
    if tag.startswith("<!--") or m.group(1) or tag.endswith("/>"):
        return "void"
    name = re.match(r"</?([A-Za-z][A-Za-z0-9-]*)", tag).group(1).lower()
    if name in _VOID:
        return "void"
    return "close" if tag.startswith("</") else "open"


def _parse_markdown(text: str) -> tuple[str, list[Tag]]:
    plain, tags, at = "", [], 0
    open_marks: list[str] = []  # emphasis markers opened and not yet closed
    for m in _MARKDOWN.finditer(text):
        kind = m.lastgroup
        token = m.group()
        if kind in ("strong", "em"):
            role = "close" if token in open_marks else "open"
            if role == "close":
                del open_marks[len(open_marks) - 1 - open_marks[::-1].index(token)]
            else:
                open_marks.append(token)
        else:
            role = {"link_open": "open", "link_close": "close"}.get(kind, "void")
        plain += text[at:m.start()]
        tags.append(Tag(len(plain), token, role))
        at = m.end()
    return plain + text[at:], tags

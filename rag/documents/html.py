"""HTML: the text a reader sees, headings kept, navigation and hidden text left out.

Scripts, styles and navigation (``nav``, page headers and footers, breadcrumbs, lists and
tables of links alone, "Next: … Previous: …" lines) are left out and counted; so is text hidden
by ``display:none``, ``visibility:hidden``, ``opacity:0``, zero font size, the ``hidden`` or
``aria-hidden`` attribute, or a text colour equal to its background, set inline or by a
stylesheet's simple ``.class``, ``#id`` or tag rule. Limits: other CSS (combinators, media
queries, external sheets) is not evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    decode_text,
)

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe"})


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)


_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}


_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def load_html(path: Path, data: bytes) -> LoadedDocument:
    """HTML text without scripts, styles and navigation; h1-h6 start sections.

    Navigation is left out and counted: ``nav`` elements and ARIA navigation, banner and
    footer landmarks, page-level ``header`` and ``footer``, breadcrumbs, texinfo's header
    panels, lists and tables of links alone (contents, an index), and paragraphs that are "Next: …
    Previous: … Up: …" lines.
    """
    from bs4 import BeautifulSoup
    from bs4.element import Comment, Doctype, NavigableString, Tag

    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    rules = _page_rules(soup)
    builder = DocumentBuilder()
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        text = _SPACES.sub(" ", "".join(paragraph))
        if is_navigation_line(text):
            builder.navigation_chars += len(text.strip())
        else:
            builder.add(text, tuple(t for _, t in stack))
        paragraph.clear()

    # Depth first with a stack of its own, not recursion: any nesting depth reads.
    # Each frame: the children left to visit, whether the element is a block, its background
    # (a page without a background colour shows white).
    frames: list[tuple[Iterator[Any], bool, tuple[int, ...]]] = [
        (iter(soup.children), False, _WHITE)
    ]
    while frames:
        children, block, background = frames[-1]
        child = next(children, _END)
        if child is _END:
            frames.pop()
            if block:
                flush()
        elif isinstance(child, Comment | Doctype):
            continue
        elif isinstance(child, NavigableString):
            paragraph.append(str(child))
        elif isinstance(child, Tag) and child.name not in _SKIPPED_TAGS:
            shown_on = _seen_on(child, rules, background)
            if shown_on is None:
                builder.hidden_chars += _text_length(child)
                continue
            if _navigation(child):
                builder.navigation_chars += _text_length(child)
                continue
            level = _HEADING_TAGS.get(child.name)
            if level is not None:
                flush()
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, _SPACES.sub(" ", child.get_text(" ")).strip()))
                builder.add(stack[-1][1], tuple(t for _, t in stack))
            else:
                if child.name in _BLOCK_TAGS:
                    flush()
                frames.append((iter(child.children), child.name in _BLOCK_TAGS, shown_on))
    flush()
    return builder.build()


def without_hidden(path: Path, data: bytes) -> tuple[str, int]:
    """The page's HTML with what a reader would not see taken out, and its characters counted.

    For an extractor that reads markup but not styles (:mod:`rag.documents.web`); the same
    rules as :func:`load_html`'s.
    """
    from bs4 import BeautifulSoup
    from bs4.element import Tag

    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    rules = _page_rules(soup)
    hidden = 0
    frames: list[tuple[Iterator[Any], tuple[int, ...]]] = [(iter(list(soup.children)), _WHITE)]
    while frames:
        children, background = frames[-1]
        child = next(children, _END)
        if child is _END:
            frames.pop()
        elif isinstance(child, Tag) and child.name not in _SKIPPED_TAGS:
            shown_on = _seen_on(child, rules, background)
            if shown_on is None:
                hidden += _text_length(child)
                child.extract()
            else:
                frames.append((iter(list(child.children)), shown_on))
    return str(soup), hidden


_END = object()


_NAVIGATION_ROLES = frozenset({"navigation", "banner", "contentinfo"})


_NAVIGATION_CLASSES = frozenset({"breadcrumb", "breadcrumbs", "nav-panel", "navbar", "navigation"})


_SECTIONING = frozenset({"article", "aside", "main", "section", "nav"})


_NAVIGATION_LINE = re.compile(r"\b(Next|Previous|Prev|Up):", re.I)


_WORD = re.compile(r"\w+")


def _navigation(tag: Any) -> bool:
    """Whether an element is the page's navigation, not its content."""
    if tag.name == "nav" or tag.get("role") in _NAVIGATION_ROLES:
        return True
    classes = set(tag.get("class") or ())
    if classes & _NAVIGATION_CLASSES:
        return True
    if tag.name in ("ul", "ol", "menu", "table") and len(tag.find_all(("li", "tr"))) >= 3:
        # Links and little else: a table of contents, an index.
        words = len(_WORD.findall(tag.get_text(" ")))
        linked = sum(len(_WORD.findall(a.get_text(" "))) for a in tag.find_all("a"))
        return words > 0 and linked >= 0.8 * words
    if tag.name in ("header", "footer") or (tag.name == "div" and "header" in classes):
        # A page's header or footer is navigation; an article's holds its title and byline.
        return not any(parent.name in _SECTIONING for parent in tag.parents)
    return False


def is_navigation_line(text: str) -> bool:
    """A manual's "Next: Index, Previous: Memory Usage, Up: libffi [Index]" line."""
    return len(set(m.lower() for m in _NAVIGATION_LINE.findall(text))) >= 2 and len(text) < 300


_WHITE = (255, 255, 255)


_NAMED_COLORS = {"white": _WHITE, "black": (0, 0, 0), "transparent": ()}


_HEX_COLOR = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})\b")


_RGB_COLOR = re.compile(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)")


_ZERO_SIZE = re.compile(r"0*\.?0+(px|pt|em|rem|%|vw|vh)?")


_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")


_SIMPLE_SELECTOR = re.compile(r"[.#]?[\w-]+")


def _page_rules(soup: Any) -> dict[str, dict[str, str]]:
    """The simple rules of the page's own stylesheets."""
    return _stylesheet_rules(" ".join(style.get_text() for style in soup.find_all("style")))


def _seen_on(
    tag: Any, rules: dict[str, dict[str, str]], background: tuple[int, ...]
) -> tuple[int, ...] | None:
    """The background ``tag`` shows on (its own, else ``background``); None when it is hidden."""
    style = _style_of(tag, rules)
    shown_on = _color(style.get("background-color") or style.get("background", "")) or background
    return None if _is_hidden(tag, style, shown_on) else shown_on


def _text_length(tag: Any) -> int:
    """Characters of a tag's text as a reader sees it, spaces collapsed."""
    return len(_SPACES.sub(" ", tag.get_text(" ")).strip())


def _declarations(css: str) -> dict[str, str]:
    """'color: red; display:none' -> {'color': 'red', 'display': 'none'}."""
    found: dict[str, str] = {}
    for declaration in css.split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            found[name.strip().lower()] = value.replace("!important", "").strip().lower()
    return found


def _stylesheet_rules(css: str) -> dict[str, dict[str, str]]:
    """Declarations of a stylesheet's simple selectors: 'p', '.class', '#id'."""
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in _RULE.findall(re.sub(r"/\*.*?\*/", "", css, flags=re.S)):
        for selector in selectors.split(","):
            if _SIMPLE_SELECTOR.fullmatch(selector.strip()):
                rules.setdefault(selector.strip().lower(), {}).update(_declarations(body))
    return rules


def _style_of(tag: Any, rules: dict[str, dict[str, str]]) -> dict[str, str]:
    """The tag's declarations: stylesheet rules for its name, classes and id, then inline."""
    style: dict[str, str] = {}
    if rules:
        classes = tag.get("class") or []
        for selector in (tag.name, *(f".{c}" for c in classes), f"#{tag.get('id', '')}"):
            style.update(rules.get(str(selector).lower(), {}))
    inline = tag.get("style")
    if inline:
        style.update(_declarations(str(inline)))
    return style


def _color(value: str) -> tuple[int, ...] | None:
    """An RGB triple from a CSS colour (or a background shorthand holding one); () clear."""
    value = value.lower()
    if match := _HEX_COLOR.search(value):
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    if match := _RGB_COLOR.search(value):
        return tuple(int(n) for n in match.groups())
    return next((rgb for name, rgb in _NAMED_COLORS.items() if name in value.split()), None)


def _is_hidden(tag: Any, style: dict[str, str], background: tuple[int, ...]) -> bool:
    """Whether a reader would see nothing of ``tag``: hidden, transparent, tiny or camouflaged."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    if style.get("display") == "none" or style.get("visibility") in ("hidden", "collapse"):
        return True
    try:
        if float(style.get("opacity", "1").rstrip("%")) == 0:
            return True
    except ValueError:
        pass
    if _ZERO_SIZE.fullmatch(style.get("font-size", "")):
        return True
    color = _color(style.get("color", ""))
    return bool(color) and color == background

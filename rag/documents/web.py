"""A web page's main text: what an article reader keeps, with its headings.

Hidden text is taken out first (:func:`rag.documents.html.without_hidden`: the extractor reads
markup, not styles), then trafilatura keeps the main content, leaving out menus, sidebars,
footers, comments and cookie notices, and writes it as Markdown, whose headings start
sections. A page too small or too odd for the extractor is read whole by the HTML path.

Limits: text that a script writes after the page loads is not there to read.
"""

from __future__ import annotations

from pathlib import Path

from rag.documents.document import LoadedDocument
from rag.documents.html import load_html, without_hidden
from rag.documents.loaders import load_markdown


def load_web_page(path: Path, data: bytes) -> LoadedDocument:
    """The main text of an HTML page, as Markdown sections; hidden text left out and counted."""
    import trafilatura

    html, hidden = without_hidden(path, data)
    try:
        markdown = trafilatura.extract(
            html,
            output_format="markdown",
            include_tables=True,
            include_comments=False,
            favor_precision=True,  # a short page's menu is otherwise taken for its text
        )
    except (ValueError, RecursionError):  # markup nested past what lxml will build
        markdown = None
    if markdown and markdown.strip():
        document = load_markdown(path, markdown.encode())
    else:
        document = load_html(path, html.encode())
    document.hidden_chars += hidden
    return document

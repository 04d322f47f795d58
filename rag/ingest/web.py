"""``rag ingest URL``: web pages, and the pages of sitemaps, fetched for a sync.

A URL given is a root, as a folder is: a page given alone is the one document under it; a
sitemap given (or a sitemap index, one level down) is the root of the same-site pages it
lists, at most ``web.max_pages``. This module only fetches; :meth:`Ingestor.sync_web` writes.

What a run does with each page: fetched (new or changed: chunked and stored with its URL as
``source``), unchanged (304, or the same bytes: nothing embedded), gone (404 or 410:
removed, and so is a sitemap's page it no longer lists), failed (a timeout, a 5xx, too
large, not allowed by robots.txt: its last good version stays, as an unreadable file's does).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rag.documents.document import LoadedDocument
from rag.documents.loaders import SUPPORTED_TYPES, load
from rag.documents.web import load_web_page
from rag.web.fetching import Fetched, WebFetcher, same_site, sitemap_pages

Validators = Callable[[str, str], tuple[str | None, str | None]]  # (root, url) -> etag, date


@dataclass
class Visit:
    """One URL given: the pages fetched under it, and the pages a sitemap lists now."""

    root: str
    listed: set[str] | None  # a sitemap's pages (an empty set: the root itself is gone)
    pages: list[Fetched]


def visit(fetcher: WebFetcher, root: str, validators: Validators, max_pages: int) -> Visit:
    """Fetch ``root``, and when it is a sitemap, the pages it lists (conditionally each)."""
    first = fetcher.fetch(root, *validators(root, root))
    listing = sitemap_pages(first)
    if listing is None:
        return Visit(root, set() if first.status == "gone" else None, [first])
    pages, sitemaps = listing
    for sitemap in sitemaps[:max_pages]:
        if not same_site(root, sitemap):
            continue
        inner = fetcher.fetch(sitemap)
        inner_listing = sitemap_pages(inner)
        if inner_listing is None:
            return Visit(root, None, [inner])  # part of the listing is unknown: remove nothing
        pages += inner_listing[0]
    kept = [page for page in dict.fromkeys(pages) if same_site(root, page)][:max_pages]
    return Visit(root, set(kept), [fetcher.fetch(page, *validators(root, page)) for page in kept])


def page_file(fetched: Fetched) -> Path:
    """A file name for a fetched page, its suffix telling its type ('page.html', 'page.pdf')."""
    suffix = mimetypes.guess_extension(fetched.content_type) if fetched.content_type else None
    if suffix not in SUPPORTED_TYPES:
        suffix = Path(urlsplit(fetched.url).path).suffix.lower()
    return Path("page" + (suffix if suffix in SUPPORTED_TYPES else ".html"))


def load_page(path: Path, data: bytes) -> LoadedDocument:
    """An HTML page's main text (:mod:`rag.documents.web`); a PDF or text file as its type."""
    return load_web_page(path, data) if path.suffix in (".html", ".htm") else load(path, data)

"""A real web site on 127.0.0.1 for the web-ingest tests and the fault bench.

``Site`` serves pages from a dict the test changes between runs (path -> ``Page``), with
ETag revalidation, redirects, 404 and 500 answers, a slow page that drips its bytes, and a
robots.txt; it counts the requests each path got and how many were answered 304.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Page:
    """What a path answers: a status, a body, headers; ``drip`` seconds between bytes."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    location: str | None = None
    etag: bool = False  # answer with an ETag, and 304 to a request that has it
    drip: float = 0.0


def html_page(title: str, *paragraphs: str, extra: str = "") -> Page:
    """An article page with a menu, a sidebar and a footer around its text."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return Page(
        (
            f"<!doctype html><html><head><title>{title}</title>"
            "<style>.secret{display:none}</style></head><body>"
            '<header><nav><a href="/">Home</a> <a href="/about">About us</a> '
            '<a href="/contact">Contact</a></nav></header>'
            f"<main><article><h1>{title}</h1>{body}{extra}</article>"
            '<aside><h3>Related</h3><ul><li><a href="/x">Bus times</a></li>'
            '<li><a href="/y">Train times</a></li></ul></aside></main>'
            "<footer><p>Copyright 2026 Harbour Authority. All rights reserved.</p></footer>"
            "</body></html>"
        ).encode()
    )


class Site:
    """The site, serving on a free port until closed."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests[self.path] += 1
                page = site.pages.get(self.path, Page(b"not here", 404, "text/plain"))
                headers = {"Content-Type": page.content_type}
                if page.location:
                    headers["Location"] = page.location
                if page.etag:
                    tag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'
                    headers["ETag"] = tag
                    if self.headers.get("If-None-Match") == tag:
                        site.not_modified[self.path] += 1
                        self._answer(304, headers, b"", 0.0)
                        return
                self._answer(page.status, headers, page.body, page.drip)

            def _answer(
                self, status: int, headers: dict[str, str], body: bytes, drip: float
            ) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if not drip:
                        self.wfile.write(body)
                        return
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        """The page's address."""
        return self.base + path

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Site:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

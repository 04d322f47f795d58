"""The one client of web servers: pages and sitemaps fetched within bounds, robots.txt obeyed.

Every request goes through :class:`WebFetcher`: http and https only, redirects followed by
hand (at most ``MAX_REDIRECTS``, each checked again), the body read as a stream and given up
past ``web.max_page_mb`` or ``web.timeout_seconds`` (a server that drips a byte a second
cannot hold a run), and each site's robots.txt read first and obeyed for ``web.user_agent``
(RFC 9309: none, or a 4xx, allows all; a 5xx or no answer allows nothing). A page asked for
again carries its ETag and Last-Modified, so an unchanged page costs a 304 and nothing more.

Limits: no cookies, logins or JavaScript; gzipped sitemaps are not read; pages are fetched
one at a time.
"""

from __future__ import annotations

import time
import urllib.robotparser
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

import httpx

from rag.errors import RagError
from rag.settings import WebSettings

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ROBOTS_BYTES = 512 * 2**10  # RFC 9309 asks crawlers to read at least 500 KiB of it


class WebAddressError(RagError):
    """An address that is not an http or https URL."""

    http_status = 400


def checked_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host.

    Raises:
        WebAddressError: any other scheme (file:, ftp:, javascript:...) or no host.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        msg = f"only http:// and https:// addresses can be ingested: {url}"
        raise WebAddressError(msg)
    return url


@dataclass(frozen=True)
class Fetched:
    """What asking for one URL gave.

    ``status``: "fetched" (``data`` holds it), "unchanged" (304), "gone" (404 or 410: the
    page no longer exists) or "failed" (``reason`` says why: it may be back later).
    """

    url: str
    status: Literal["fetched", "unchanged", "gone", "failed"]
    code: int = 0  # the HTTP status; 0 when none came
    data: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    reason: str = ""


class WebFetcher:
    """Fetches pages for one run; close it (or use ``with``) to free its connections."""

    def __init__(self, settings: WebSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        per_step = min(settings.timeout_seconds, 15.0)
        self._client = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(per_step),
            headers={"User-Agent": settings.user_agent},
            transport=transport,
        )
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The page at ``url`` (asked conditionally when ``etag`` or ``last_modified`` is known)."""
        conditions = {}
        if etag:
            conditions["If-None-Match"] = etag
        if last_modified:
            conditions["If-Modified-Since"] = last_modified
        where = url
        for _ in range(MAX_REDIRECTS + 1):
            if (refused := self._robots_refusal(where)) is not None:
                return Fetched(url, "failed", reason=refused)
            fetched, location = self._get(url, where, conditions, self.settings.max_page_mb)
            if location is None:
                return fetched
            where = urljoin(where, location)
            if urlsplit(where).scheme.lower() not in ("http", "https"):
                return Fetched(url, "failed", reason=f"redirected to {where}, not a web page")
        return Fetched(url, "failed", reason=f"more than {MAX_REDIRECTS} redirects (a loop?)")

    def _robots_refusal(self, url: str) -> str | None:
        """Why the site's robots.txt keeps this program's user agent from ``url``, or None."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._read_robots(origin)
        rules = self._robots[origin]
        if rules is None:
            return f"{origin}/robots.txt cannot be read now, so nothing there is fetched"
        if not rules.can_fetch(self.settings.user_agent, url):
            return f"robots.txt does not allow {url}"
        return None

    def _read_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        """The site's rules; None when none can be read for now (nothing is then fetched)."""
        rules = urllib.robotparser.RobotFileParser()
        fetched, location = self._get(origin, f"{origin}/robots.txt", {}, _ROBOTS_BYTES / 2**20)
        if location is not None:  # one redirect, as RFC 9309 allows at least five
            fetched, _ = self._get(origin, urljoin(origin, location), {}, _ROBOTS_BYTES / 2**20)
        if fetched.status == "fetched":
            rules.parse(fetched.data.decode("utf-8", errors="replace").splitlines())
        elif 400 <= fetched.code < 500:
            rules.parse([])  # no robots.txt: everything is allowed
        else:
            return None
        return rules

    def _get(
        self, url: str, where: str, headers: dict[str, str], max_mb: float
    ) -> tuple[Fetched, str | None]:
        """One GET of ``where``: what it gave, and the redirect's location if it was one."""
        deadline = time.monotonic() + self.settings.timeout_seconds
        try:
            with self._client.stream("GET", where, headers=headers) as response:
                status = response.status_code
                if status in _REDIRECTS and "location" in response.headers:
                    return Fetched(url, "failed", status), response.headers["location"]
                if status == 304:
                    return Fetched(url, "unchanged", status), None
                if status in (404, 410):
                    return Fetched(url, "gone", status, reason=f"HTTP {status}"), None
                if status >= 400 or status < 200:
                    reason = f"the server answered HTTP {status}"
                    return Fetched(url, "failed", status, reason=reason), None
                limit = int(max_mb * 2**20)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    return Fetched(url, "failed", status, reason=_too_large(max_mb)), None
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > limit:
                        return Fetched(url, "failed", status, reason=_too_large(max_mb)), None
                    if time.monotonic() > deadline:
                        return Fetched(url, "failed", status, reason=self._too_slow()), None
                return (
                    Fetched(
                        url,
                        "fetched",
                        status,
                        bytes(body),
                        response.headers.get("content-type", "").split(";")[0].strip().lower(),
                        response.headers.get("etag"),
                        response.headers.get("last-modified"),
                    ),
                    None,
                )
        except httpx.TimeoutException:
            return Fetched(url, "failed", reason=self._too_slow()), None
        except httpx.HTTPError as error:
            return Fetched(url, "failed", reason=f"cannot reach {where}: {error}"), None

    def _too_slow(self) -> str:
        return f"not received within {self.settings.timeout_seconds:g} s"

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> WebFetcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _too_large(max_mb: float) -> str:
    return f"larger than {max_mb:g} MB (web.max_page_mb)"


def sitemap_pages(fetched: Fetched) -> tuple[list[str], list[str]] | None:
    """(page URLs, sitemap URLs) a sitemap lists, or None when ``fetched`` is no sitemap."""
    if fetched.status != "fetched":
        return None
    head = fetched.data[:512].lstrip()
    if not (head.startswith(b"<?xml") or head.startswith(b"<urlset") or b"<sitemapindex" in head):
        return None
    try:
        root = ElementTree.fromstring(fetched.data)
    except ElementTree.ParseError:
        return None
    kind = root.tag.rsplit("}", 1)[-1]
    if kind not in ("urlset", "sitemapindex"):
        return None
    locations = [
        (element.text or "").strip()
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "loc" and (element.text or "").strip()
    ]
    return (locations, []) if kind == "urlset" else ([], locations)


def same_site(url: str, other: str) -> bool:
    """Whether two URLs are on one site (scheme aside: a site moved to https is the same)."""
    return urlsplit(url).netloc.lower() == urlsplit(other).netloc.lower()

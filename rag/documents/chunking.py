"""Structure-first chunking, measured in the embedding model's word pieces.

A chunk is an exact slice of the document's text (the text stored is the text embedded) that
never crosses a section (heading or page) and never holds more word pieces than the embedder
reads. Within a section, text is cut at the coarsest boundary that makes the pieces fit:
paragraphs, then lines, then sentences, then words, then word pieces; adjacent pieces are then
packed greedily back up to the limit. When a paragraph has to be cut, the next chunk repeats
up to ``overlap_tokens`` of its tail so a sentence is not lost at the seam.

The document is tokenized once with offsets, so the size of any span is two bisections.

:func:`is_navigation` tells a chunk that only points elsewhere (an index, a table of contents,
a manual's "Next: … Previous: … Up: …" line) from content; ingest marks such chunks and
retrieval ranks them below content. It reads English-language layouts: dot leaders, page
numbers at line ends, texinfo's navigation words.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.documents.document import LoadedDocument, Section
from rag.documents.html import is_navigation_line
from rag.errors import SettingsError

# Boundaries tried in order, coarsest first. Overlap applies from the second one on.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n\s*"),  # lines
    re.compile(r"(?<=[.!?;:])\s+"),  # sentences
    re.compile(r"\s+"),  # words
)
_FIRST_OVERLAP_LEVEL = 1


@dataclass(frozen=True)
class Chunk:
    """``text`` is ``document.text[start:end]``."""

    text: str
    start: int
    end: int
    headings: tuple[str, ...]
    page: int | None
    tokens: int
    location: str | None = None  # the section's, with the sheet rows it holds


class Chunker:
    """Cuts documents into chunks of at most ``max_tokens`` word pieces."""

    def __init__(
        self,
        token_spans: Callable[[str], tuple[Sequence[int], Sequence[int]]],
        max_tokens: int,
        overlap_tokens: int = 0,
    ) -> None:
        if not 0 <= overlap_tokens < max_tokens:
            msg = (
                f"chunking.overlap_tokens ({overlap_tokens}) must be below the chunk size "
                f"({max_tokens} tokens)"
            )
            raise SettingsError(msg)
        self.token_spans = token_spans
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    def split(self, document: LoadedDocument) -> list[Chunk]:
        """Chunks of ``document`` in reading order."""
        text = document.text
        span = _Spans(text, *self.token_spans(text))
        chunks: list[Chunk] = []
        for section in _merge_heading_only(document.sections, text):
            start, end = span.strip(section.start, section.end)
            if start >= end:
                continue
            for piece_start, piece_end in self._split(span, start, end, level=0):
                chunks.append(
                    Chunk(
                        text=text[piece_start:piece_end],
                        start=piece_start,
                        end=piece_end,
                        headings=section.headings,
                        page=section.page,
                        tokens=span.tokens(piece_start, piece_end),
                        location=_location(document, section, piece_start, piece_end),
                    )
                )
        return chunks

    def _split(self, span: _Spans, start: int, end: int, level: int) -> list[tuple[int, int]]:
        """Pieces of [start, end) that each fit, packed back together as far as they fit."""
        if span.tokens(start, end) <= self.max_tokens:
            return [(start, end)]
        if level == len(_BOUNDARIES):
            return span.cut_at_tokens(start, end, self.max_tokens)
        pieces: list[tuple[int, int]] = []
        for part_start, part_end in span.parts(start, end, _BOUNDARIES[level]):
            pieces.extend(self._split(span, part_start, part_end, level + 1))
        overlap = self.overlap_tokens if level >= _FIRST_OVERLAP_LEVEL else 0
        return self._pack(span, pieces, overlap)

    def _pack(
        self, span: _Spans, pieces: list[tuple[int, int]], overlap: int
    ) -> list[tuple[int, int]]:
        """Join consecutive pieces while they fit; start each new group with a short tail."""
        groups: list[tuple[int, int]] = []
        group: list[tuple[int, int]] = []
        for piece in pieces:
            if group and span.tokens(group[0][0], piece[1]) > self.max_tokens:
                groups.append((group[0][0], group[-1][1]))
                group = self._tail(span, group, piece, overlap)
            group.append(piece)
        if group:
            groups.append((group[0][0], group[-1][1]))
        return groups

    def _tail(
        self, span: _Spans, group: list[tuple[int, int]], following: tuple[int, int], overlap: int
    ) -> list[tuple[int, int]]:
        """The last pieces of ``group`` worth at most ``overlap`` tokens that fit before it."""
        tail: list[tuple[int, int]] = []
        for piece in reversed(group[1:]):
            if span.tokens(piece[0], group[-1][1]) > overlap:
                break
            if span.tokens(piece[0], following[1]) > self.max_tokens:
                break
            tail.insert(0, piece)
        return tail


class _Spans:
    """Token arithmetic over one document's text."""

    def __init__(self, text: str, token_starts: Sequence[int], token_ends: Sequence[int]) -> None:
        self.text = text
        self.starts = token_starts
        self.ends = token_ends

    def tokens(self, start: int, end: int) -> int:
        """Word pieces that begin inside [start, end)."""
        return bisect_left(self.starts, end) - bisect_left(self.starts, start)

    def strip(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) without surrounding white space."""
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return start, end

    def parts(self, start: int, end: int, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
        """Non-blank stretches of [start, end) between matches of ``boundary``."""
        parts = []
        cursor = start
        for match in boundary.finditer(self.text, start, end):
            parts.append(self.strip(cursor, match.start()))
            cursor = match.end()
        parts.append(self.strip(cursor, end))
        return [(a, b) for a, b in parts if a < b]

    def cut_at_tokens(self, start: int, end: int, size: int) -> list[tuple[int, int]]:
        """Cut a run with no white space into pieces of ``size`` word pieces."""
        first = bisect_left(self.starts, start)
        last = bisect_left(self.starts, end)
        pieces = []
        for index in range(first, last, size):
            piece_end = self.ends[min(index + size, last) - 1]
            pieces.append((max(start, self.starts[index]) if index > first else start, piece_end))
        if pieces:
            pieces[-1] = (pieces[-1][0], end)
        return pieces


def _location(document: LoadedDocument, section: Section, start: int, end: int) -> str | None:
    """'sheet Costs, rows 2–14': the section's location, and the rows a piece of a sheet holds."""
    rows = document.rows_between(start, end, section)
    if rows is None:
        return section.location
    first, last = rows
    held = f"row {first}" if first == last else f"rows {first}–{last}"
    return f"{section.location}, {held}" if section.location else held


def _merge_heading_only(sections: list[Section], text: str) -> list[Section]:
    """Fold a section that is only its heading into the section after it on the same page.

    A title straight above a subtitle would otherwise become a chunk of two words.
    """
    merged: list[Section] = []
    waiting: Section | None = None  # a heading-only section, to prefix to the next one
    for section in sections:
        if waiting is not None and waiting.page == section.page:
            section = Section(
                waiting.start, section.end, section.headings, section.page, section.location
            )
        elif waiting is not None:
            merged.append(waiting)
        waiting = None
        if _is_heading_only(section, text):
            waiting = section
        else:
            merged.append(section)
    if waiting is not None:
        merged.append(waiting)
    return merged


def _is_heading_only(section: Section, text: str) -> bool:
    """True for '# Title', 'Title' or 'Title' over an underline, and nothing more."""
    lines = [line.strip() for line in text[section.start : section.end].split("\n")]
    lines = [line for line in lines if line]
    if not section.headings or not 1 <= len(lines) <= 2:
        return False
    underlined_or_alone = len(lines) == 1 or len(set(lines[1])) == 1
    return lines[0].lstrip("#").strip() == section.headings[-1] and underlined_or_alone


_LEADER_ENTRY = re.compile(r"(?:\.\s?){3,}\s*(?:\d{1,4}|[ivxlc]{1,6})\b")
_PAGE_LINE = re.compile(r"^[^\d\s:][^:]{1,80}?[\s,]\d{1,4}(?:\s*[,–-]\s*\d{1,4})*\s*$")


def is_navigation(text: str) -> bool:
    """Whether a chunk only points elsewhere: an index, a table of contents, navigation.

    Half its lines (three or more) dot-leader entries ("Invoking asn1Parser . . . . 5"), most
    lines ending in page numbers ("threads, 1, 12"), or navigation lines
    (:func:`rag.documents.loaders.is_navigation_line`) making up most of the text.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    leaders = sum(bool(_LEADER_ENTRY.search(line)) for line in lines)
    if leaders >= 3 and leaders >= 0.5 * len(lines):
        return True
    paged = sum(bool(_PAGE_LINE.match(line)) for line in lines)
    if len(lines) >= 6 and paged >= 0.6 * len(lines):
        return True
    navigation = sum(len(line) for line in lines if is_navigation_line(line))
    return navigation >= 0.5 * len(text.strip())

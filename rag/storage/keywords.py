"""BM25 keyword search over chunks, in an SQLite FTS5 database beside the store.

Dense embeddings miss exact words a question shares with the right passage (an identifier such as
``popitem``, a rare term); BM25 finds them. The index is a file, so every process on the machine
shares it and none rebuilds it at start. It is derived from the Chroma collection, which the store
rebuilds it from when it is lost (see ``rag.storage.store``); the store writes it in the same step
as the chunks, and what a write left half done is named in a journal (``pending``) that the next
reader or writer settles.

Words are Unicode words, case-folded with accents removed ("Größe" and "Grosse" match). Chinese,
Japanese and Korean text has no spaces between words, so it is indexed by character pairs
(bigrams), as search engines' CJK analyzers do. FTS5 indexes the words this module makes
(its ``ascii`` tokenizer keeps every non-ASCII character and ``_`` inside a word), so search and
the rest of retrieval agree on what a word is. A search scores at most ``budget`` postings
(chunk, word): past it the question's commonest words are left out, as they weigh least in
BM25, which bounds a search's time at any size (FTS5 scores ~1.5 µs a posting on one core).
Limits: stop words are English only; BM25 does no stemming in any language ("pumps" does not
match "pump"); ``singular`` folds English plurals only, for ranking sentences; the file keeps
a copy of the chunks' text and metadata (for searches and per-file records without a call to
Chroma) and takes about 3.7 times as much disk as their text.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_WORD = re.compile(r"\w+")
# Han, Hiragana, Katakana (with the prolonged sound mark), Hangul: written without spaces.
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+)")
_STOPWORDS = frozenset(
    (
        "a an and are as at be by can do does for from has have how i if in into is it its of "
        "on or that the their there these this to was what when where which who why will with"
    ).split()
)


_ACCENTS = re.compile("[\u0300-\u036f]")  # Latin, Greek and Cyrillic diacritics only


def keywords(text: str) -> list[str]:
    """Folded words and identifiers, no stop words: 'The d.popitem()' -> ['d', 'popitem']."""
    found: list[str] = []
    for word in _WORD.findall(_fold(text)):
        for n, part in enumerate(_CJK.split(word)):
            if n % 2:  # a run of CJK characters: its character pairs
                found += [part[i : i + 2] for i in range(max(1, len(part) - 1))]
            elif part and part not in _STOPWORDS:
                found.append(part)
    return found


def singular(term: str) -> str:
    """An English plural's singular, roughly ('vectors' -> 'vector', 'classes' -> 'class')."""
    if len(term) <= 3 or not term.endswith("s") or term.endswith(("ss", "us", "is")):
        return term
    if term.endswith("sses"):
        return term[:-2]
    if term.endswith("ies") and len(term) > 4:
        return term[:-3] + "y"
    return term[:-1]


def _fold(text: str) -> str:
    """Case-folded, accents removed: 'Größe' -> 'grosse', 'naïve' -> 'naive'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", _ACCENTS.sub("", decomposed))


class KeywordIndex:
    """Okapi BM25 (FTS5's ``bm25()``) over chunk ids, in an SQLite file or in memory.

    Safe to use from several threads (one connection, one lock) and several processes (SQLite's
    write-ahead log: readers never wait for the writer).
    """

    def __init__(self, path: Path | None = None) -> None:
        """Open (or create) the index at ``path``; None keeps it in memory (tests)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path) if path else ":memory:",
            timeout=600,
            check_same_thread=False,
            isolation_level=None,  # transactions are begun by _writing, as IMMEDIATE
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._writing():
            if self._db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                # Another version's index: start again, and the store fills it in (reconcile).
                for table in ("chunks", "terms", "vocabulary", "pending", "meta"):
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
                self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction, begun IMMEDIATE.

        It waits for another process's write to end, where a deferred one would fail when the
        other commits first (SQLite's BUSY_SNAPSHOT).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return int(self.meta("count") or 0)

    def __contains__(self, chunk_id: object) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return row is not None

    def meta(self, key: str) -> str | None:
        """A value the index keeps about itself (its count, what it was caught up to)."""
        with self._lock:
            return self._value(key)

    def set_meta(self, **values: str | float) -> None:
        """Keep these values about the index."""
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items()
            )

    def intend(self, chunk_ids: Iterable[str]) -> None:
        """Note that these chunks are about to change in the store (the journal)."""
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO pending(id) VALUES (?)", ((i,) for i in chunk_ids)
            )

    def pending(self) -> list[str]:
        """Chunks a write meant to change and did not confirm: the store must say what they are."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM pending")]

    def rows(self, chunk_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """The (text, metadata) of these chunks, by id (those indexed)."""
        return self._rows("SELECT id, text, metadata FROM chunks WHERE id IN ({})", chunk_ids)

    def _rows(self, sql: str, chunk_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """(id, text, metadata) rows of ``sql`` as {id: (text, metadata)}."""
        return {i: (text, json.loads(meta)) for i, text, meta in self._paged(sql, chunk_ids)}

    def update(
        self,
        chunks: Iterable[tuple[str, str, Mapping[str, Any]]] = (),
        removed: Iterable[str] = (),
        settled: Iterable[str] = (),
        words: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Index (id, text, metadata) ``chunks``, replacing what they held, forget ``removed``.

        One transaction, which also takes every chunk named here out of the journal, and the
        ``settled`` ones that stay as they are. ``words`` are chunks' :func:`keywords` made
        already (by the processes that read the files).
        """
        words = words or {}
        chunks = list(chunks)
        gone = sorted(set(removed) | {chunk_id for chunk_id, _, _ in chunks})
        with self._writing():
            vocabulary: Counter[str] = Counter()
            count = int(self._value("count") or 0)
            for start in range(0, len(gone), _IDS_PER_STATEMENT):
                page = gone[start : start + _IDS_PER_STATEMENT]
                marks = ",".join("?" * len(page))
                rows = self._db.execute(
                    f"SELECT c.rowid, t.body FROM chunks c JOIN terms t ON t.rowid = c.rowid "
                    f"WHERE c.id IN ({marks})",
                    page,
                ).fetchall()
                for _, body in rows:
                    vocabulary.subtract(set(body.split()))
                rowids = [(rowid,) for rowid, _ in rows]
                self._db.executemany("DELETE FROM terms WHERE rowid = ?", rowids)
                self._db.executemany("DELETE FROM chunks WHERE rowid = ?", rowids)
                self._db.executemany("DELETE FROM pending WHERE id = ?", ((i,) for i in page))
                count -= len(rows)
            self._db.executemany("DELETE FROM pending WHERE id = ?", ((i,) for i in settled))
            for chunk_id, text, metadata in chunks:
                made = words.get(chunk_id)
                terms = list(made) if made is not None else keywords(text)
                vocabulary.update(set(terms))
                rowid = self._db.execute(
                    f"INSERT INTO chunks(id, text, metadata, {', '.join(_FIELDS)}) "
                    f"VALUES (?, ?, ?, {', '.join('?' * len(_FIELDS))})",
                    (
                        chunk_id,
                        text,
                        json.dumps(metadata),
                        *(_field(metadata, key) for key in _FIELDS),
                    ),
                ).lastrowid
                self._db.execute(
                    "INSERT INTO terms(rowid, body) VALUES (?, ?)", (rowid, " ".join(terms))
                )
            count += len(chunks)
            self._db.executemany(
                "INSERT INTO vocabulary(term, chunks) VALUES (?, ?) "
                "ON CONFLICT(term) DO UPDATE SET chunks = chunks + excluded.chunks",
                ((term, n) for term, n in vocabulary.items() if n),
            )
            self._db.executemany(
                "DELETE FROM vocabulary WHERE term = ? AND chunks <= 0",
                ((term,) for term, n in vocabulary.items() if n < 0),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('count', ?)", (count,)
            )

    def _value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def clear(self) -> None:
        """Forget every chunk (the store was reset)."""
        with self._writing():
            for table in ("chunks", "terms", "vocabulary", "pending", "meta"):
                self._db.execute(f"DELETE FROM {table}")

    @contextmanager
    def sweeping(self) -> Iterator[Callable[[Iterable[str]], None]]:
        """Forget every chunk that is not kept: ``keep(ids)`` as often as needed in the block.

        The kept ids wait in a temporary table, not in memory.
        """
        table = f"kept_{uuid.uuid4().hex}"
        with self._lock:
            self._db.execute(f"CREATE TEMP TABLE {table} (id TEXT PRIMARY KEY)")

        def keep(chunk_ids: Iterable[str]) -> None:
            with self._writing():
                self._db.executemany(
                    f"INSERT OR IGNORE INTO {table}(id) VALUES (?)", ((i,) for i in chunk_ids)
                )

        try:
            yield keep
            with self._lock:
                gone = [
                    row[0]
                    for row in self._db.execute(
                        f"SELECT id FROM chunks WHERE id NOT IN (SELECT id FROM {table})"
                    )
                ]
            for start in range(0, len(gone), _ROWS_PER_PAGE):
                self.update(removed=gone[start : start + _ROWS_PER_PAGE])
        finally:
            with self._lock:
                self._db.execute(f"DROP TABLE {table}")

    def versions(self, chunk_ids: Sequence[str]) -> dict[str, tuple[str, float | None]]:
        """(content hash, write stamp or None) of these chunks, by id (those indexed)."""
        rows = self._paged(
            "SELECT id, content_hash, json_extract(metadata, '$.written') FROM chunks "
            "WHERE id IN ({})",
            chunk_ids,
        )
        return {chunk_id: (content_hash, written) for chunk_id, content_hash, written in rows}

    def _pairs(self, sql: str, values: Sequence[str]) -> dict[str, str]:
        """The (key, value) rows of ``sql`` as a dict (see ``_paged``)."""
        return dict(self._paged(sql, values))

    def _paged(self, sql: str, values: Sequence[str]) -> list[Any]:
        """The rows of ``sql`` for ``values`` in its ``IN ({})``, a page of values at a time."""
        found: list[Any] = []
        with self._lock:
            for start in range(0, len(values), _IDS_PER_STATEMENT):
                page = list(values[start : start + _IDS_PER_STATEMENT])
                found += self._db.execute(sql.format(",".join("?" * len(page))), page).fetchall()
        return found

    def files(self, roots: Sequence[str] | None = None) -> Iterator[tuple[str, str]]:
        """(root, source) of every file with chunks under these roots, or of all."""
        sql = "SELECT DISTINCT root, source FROM chunks"
        if roots is not None:
            sql += f" WHERE root IN ({','.join('?' * len(roots))})"
        with self._lock:
            found = self._db.execute(sql, list(roots or ())).fetchall()
        for root, source in found:
            yield str(root), str(source)

    def rows_of(self, root: str, source: str) -> list[tuple[str, dict[str, Any]]]:
        """Id and record fields of every chunk of one file."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, {', '.join(_FIELDS)} FROM chunks WHERE root = ? AND source = ?",
                (root, source),
            ).fetchall()
        return [(row[0], dict(zip(_FIELDS, row[1:], strict=True))) for row in rows]

    def file_counts(self) -> dict[tuple[str, str], int]:
        """Chunk count of every file, by (root, source)."""
        with self._lock:
            rows = self._db.execute("SELECT root, source, count(*) FROM chunks GROUP BY 1, 2")
            return {(root, source): count for root, source, count in rows}

    def with_content(self, content_hashes: Sequence[str]) -> dict[str, str]:
        """An id of a chunk with each of these content hashes that any chunk has."""
        return self._pairs(
            "SELECT content_hash, min(id) FROM chunks WHERE content_hash IN ({}) "
            "GROUP BY content_hash",
            content_hashes,
        )

    def at(
        self, places: Iterable[tuple[Any, Any, Any, int]]
    ) -> dict[tuple[Any, Any, Any, int], str]:
        """Ids of the chunks at these (root, source, file hash, chunk index) places."""
        found = {}
        with self._lock:
            for place in places:
                row = self._db.execute(
                    "SELECT id FROM chunks WHERE root = ? AND source = ? AND chunk_index = ? "
                    "AND file_hash = ?",
                    (place[0], place[1], place[3], place[2]),
                ).fetchone()
                if row is not None:
                    found[place] = str(row[0])
        return found

    def _frequencies(self, terms: Collection[str]) -> dict[str, int]:
        """How many chunks hold each term (absent: none)."""
        terms = sorted(terms)
        if not terms:
            return {}
        rows = self._db.execute(
            f"SELECT term, chunks FROM vocabulary WHERE term IN ({','.join('?' * len(terms))})",
            terms,
        )
        return dict(rows.fetchall())

    def weights(self, query: str) -> dict[str, float]:
        """Each distinct query keyword's BM25 inverse document frequency (rare words weigh most).

        A word no chunk holds gets the highest weight there is: it is as rare as can be.
        """
        terms = set(keywords(query))
        with self._lock:
            count = int(self._value("count") or 0)
            holding = self._frequencies(terms)
        return {term: _idf(count, holding.get(term, 0)) for term in terms}

    def vocabulary_has(self, term: str) -> bool:
        """Whether any indexed chunk holds the (folded) ``term``."""
        with self._lock:
            return bool(self._frequencies([term]))

    def search(
        self,
        query: str,
        n: int,
        sources: Collection[str] | None = None,
        file_types: Collection[str] | None = None,
        budget: int | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` best (chunk id, score) pairs for ``query``, best first; score > 0.

        Only chunks of these ``sources`` and ``file_types`` when given. With a ``budget``
        (``retrieval.keyword_budget``), the rarest words are searched while their postings
        stay within it (the rarest one always); without, every word.
        """
        with self._lock:
            holding = self._frequencies(set(keywords(query)))
            chosen: list[str] = []
            total = 0
            for term in sorted(holding, key=lambda t: (holding[t], t)):
                if chosen and budget is not None and total + holding[term] > budget:
                    break
                chosen.append(term)
                total += holding[term]
            if not chosen:
                return []
            match = " OR ".join(f'"{term}"' for term in chosen)
            filters = [
                (c, sorted(a)) for c, a in (("source", sources), ("file_type", file_types)) if a
            ]
            if not filters:
                # The best n first, then their ids: a chunk row read for every match is slow
                # when the chunks table is not in memory.
                sql = (
                    "SELECT c.id, best.score FROM (SELECT rowid, -bm25(terms) AS score FROM terms "
                    "WHERE terms MATCH ? ORDER BY bm25(terms) LIMIT ?) best "
                    "JOIN chunks c ON c.rowid = best.rowid ORDER BY best.score DESC, c.id"
                )
                rows = self._db.execute(sql, (match, n))
            else:
                sql = (
                    "SELECT c.id, -bm25(terms) FROM terms JOIN chunks c ON c.rowid = terms.rowid "
                    "WHERE terms MATCH ?"
                )
                arguments: list[Any] = [match]
                for column, allowed in filters:
                    sql += f" AND c.{column} IN ({','.join('?' * len(allowed))})"
                    arguments += allowed
                rows = self._db.execute(
                    f"{sql} ORDER BY bm25(terms), c.id LIMIT ?", [*arguments, n]
                )
            return [(i, float(s)) for i, s in rows]


def _field(metadata: Mapping[str, Any], key: str) -> str | int:
    value = metadata.get(key)
    if key in _NUMBERS:
        return int(value) if value is not None else -1
    return str(value) if value is not None else ""


_IDS_PER_STATEMENT = 500
_ROWS_PER_PAGE = 10_000
# The chunk's metadata the index keeps: what searches filter by, and the per-file record.
_FIELDS = (
    "content_hash",
    "root",
    "source",
    "file_type",
    "file_hash",
    "pipeline",
    "chunk_index",
    "chunk_count",
)
_NUMBERS = {"chunk_index", "chunk_count"}
_SCHEMA_VERSION = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
    metadata TEXT NOT NULL, content_hash TEXT NOT NULL,
    root TEXT NOT NULL, source TEXT NOT NULL, file_type TEXT NOT NULL, file_hash TEXT NOT NULL,
    pipeline TEXT NOT NULL, chunk_index INTEGER NOT NULL, chunk_count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_place ON chunks(root, source, chunk_index);
CREATE INDEX IF NOT EXISTS chunks_content ON chunks(content_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5(body, tokenize="ascii tokenchars '_'");
CREATE TABLE IF NOT EXISTS vocabulary (term TEXT PRIMARY KEY, chunks INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


def _idf(count: int, holding: int) -> float:
    """BM25's inverse document frequency of a term that ``holding`` of ``count`` chunks hold."""
    return math.log((count - holding + 0.5) / (holding + 0.5) + 1)

"""The store: where it is, what built it, and whether a write left it wrong.

An interrupted or foreign write could leave chunks without a file record, duplicate ids, files
stored incompletely, or the keyword index out of step.
"""

from __future__ import annotations

from collections import Counter

from rag.doctor.report import Check, Report
from rag.models.embeddings import Embedder
from rag.settings import Settings
from rag.storage.connection import StoreError
from rag.storage.records import FileRecord
from rag.storage.store import ChunkStore, open_store

RECORD_FIELDS = ("root", "source", "file_hash", "pipeline", "chunk_index", "chunk_count")


def check_store(
    report: Report,
    settings: Settings,
    embedder: Embedder,
    store: ChunkStore | None,
    repair: bool = False,
) -> None:
    """The store's checks (``repair``: the keyword index rebuilt from Chroma first)."""
    report.add("store", "mode", settings.store.mode)
    own = store is None
    try:
        if store is None:
            store = open_store(settings, embedder.name, check_embedder=False)
    except StoreError as error:
        report.add("store", "location", str(error), "fail")
        return
    try:
        report.add(
            "store", "location", f"{store.location}, collection {settings.collection_name!r}"
        )
        built_with = store.built_with()
        if built_with != embedder.name:
            report.add(
                "store",
                "embedding model",
                f"built with {built_with!r}, not the configured {embedder.name!r}: "
                "re-run the ingest with --reset",
                "fail",
            )
        if repair:
            rebuilt = store.rebuild_index()
            report.add("store", "keyword index rebuilt", f"{rebuilt} chunks from Chroma", "ok")
        for check in store_consistency(store):
            report.checks.append(check)
    finally:
        if own:
            store.close()


def store_consistency(store: ChunkStore) -> list[Check]:
    """Documents, chunks, and what an interrupted or foreign write could leave wrong."""
    count = store.count()
    ids: Counter[str] = Counter()
    orphans: list[str] = []
    files: dict[tuple[str, str], FileRecord] = {}
    for chunk_id, meta in store.metadatas():
        ids[chunk_id] += 1
        if any(name not in (meta or {}) for name in RECORD_FIELDS):
            orphans.append(chunk_id)
            continue
        key = (str(meta["root"]), str(meta["source"]))
        files.setdefault(key, FileRecord(*key)).add(chunk_id, meta)
    checks = [
        Check("store", "documents", str(len(files))),
        Check("store", "chunks", str(count)),
    ]
    duplicates = [chunk_id for chunk_id, seen in ids.items() if seen > 1]
    incomplete = [record.source for record in files.values() if not record.complete]
    problems = {
        "chunks without a file record": orphans,
        "duplicate ids": duplicates,
        "files stored incompletely": incomplete,
    }
    for name, found in problems.items():
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        if found:
            value = f"{len(found)}: {shown}; re-run the ingest with --reset"
            checks.append(Check("store", name, value, "fail"))
        else:
            checks.append(Check("store", name, "none", "ok"))
    if sum(ids.values()) != count:
        checks.append(Check("store", "chunks read", f"{sum(ids.values())} of {count}", "fail"))
    checks.append(_keyword_index(store, count))
    return checks


def _keyword_index(store: ChunkStore, count: int) -> Check:
    """Whether the keyword index holds what the store holds (a warning: opening mends it)."""
    indexed, unsettled = store.index_state()
    if indexed == count and not unsettled:
        return Check("store", "keyword index", f"in step: {indexed} chunks", "ok")
    value = (
        f"{indexed} chunks of {count}, {unsettled} unsettled by a stopped write; the next "
        "search settles a stopped write, the next opening of the store compares every chunk, "
        "`rag doctor --repair` rebuilds it"
    )
    return Check("store", "keyword index", value, "warn")

"""The keyword index kept in step with the Chroma collection it is derived from.

A write notes the ids it will touch in the index's journal, writes Chroma, then updates the
index and clears those notes in one transaction: :func:`settle` finishes what a killed write
left noted, from what Chroma holds. :func:`reconcile` compares the index with Chroma a page at
a time (content hashes, a server's write stamps) and reads only what changed; a lost index is
rebuilt so. :func:`fill_chroma` gives an older store's texts back to Chroma once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, cast

from rag.storage.records import Metadata

if TYPE_CHECKING:
    from rag.storage.connection import StoreConnection

log = logging.getLogger(__name__)

# What a read of chunks asks Chroma for beside their ids.
ROWS = ["documents", "metadatas"]

# Records per read: embedded Chroma fails a read of more than about 32,766 ("too many SQL
# variables"), and a page bounds the memory one read takes.
READ_PAGE = 10_000


def settle(store: StoreConnection) -> None:
    """Finish the keyword index's part of a write that was killed after it began.

    A chunk Chroma holds is indexed as Chroma holds it; one it lacks is forgotten.
    """
    pending = store.index.pending()
    for start in range(0, len(pending), READ_PAGE):
        page = pending[start : start + READ_PAGE]
        found: Any = store.collection.get(ids=page, include=cast(Any, ROWS))
        chunks, _ = rows_from_chroma(found["ids"], found["documents"], found["metadatas"])
        held = set(found["ids"])
        store.index.update(chunks, removed=[i for i in page if i not in held], settled=page)


def reconcile(store: StoreConnection, where: Mapping[str, Any] | None = None) -> float:
    """Bring the keyword index in line with the chunks matching ``where``, or all of them.

    Compares versions (content hash, and a server's write stamp) a page at a time and reads
    the text of changed chunks only; with no ``where``, also forgets what the store no
    longer holds. Returns the newest write stamp seen (0 when none).
    """
    newest = 0.0
    textless: list[str] = []
    with store.index.sweeping() if where is None else nullcontext(None) as keep:
        for page in store._read_pages(where, ["metadatas"]):
            ids = [chunk_id for chunk_id, _, _ in page]
            indexed = store.index.versions(ids)
            changed = [
                chunk_id
                for chunk_id, metadata, _ in page
                if not _same_version(metadata, indexed.get(chunk_id))
            ]
            if changed:
                found: Any = store.collection.get(ids=changed, include=cast(Any, ROWS))
                chunks, missing = rows_from_chroma(
                    found["ids"], found["documents"], found["metadatas"]
                )
                store.index.update(chunks)
                textless += missing
            newest = max([newest, *(float(m.get("written", 0)) for _, m, _ in page)])
            if keep is not None:
                keep(ids)
    if textless:
        drop_textless(store, textless)
    return newest


def rows_from_chroma(
    ids: Sequence[str], documents: Sequence[str | None], metadatas: Sequence[Any]
) -> tuple[list[tuple[str, str, Metadata]], list[str]]:
    """The (id, text, metadata) of chunks Chroma returned, and the ids of those textless."""
    rows, textless = [], []
    for chunk_id, text, metadata in zip(ids, documents, metadatas, strict=True):
        if text is not None:
            rows.append((chunk_id, text, cast(Metadata, metadata)))
        else:
            textless.append(chunk_id)
    return rows, textless


def fill_chroma(store: StoreConnection) -> None:
    """Give Chroma the texts and metadata an older embedded store kept in the index alone.

    Such a chunk's metadata has what dense filters need alone (no ``content_hash``). Once
    per index (its ``chroma_rows`` mark); the vectors stay as they are.
    """
    if store.index.meta("chroma_rows"):
        return
    # An empty index holds no texts to give (a new one, or a lost one rebuilt from Chroma).
    pages = store._read_pages(None, ["metadatas"]) if len(store.index) else iter(())
    for page in pages:
        bare = [chunk_id for chunk_id, metadata, _ in page if "content_hash" not in metadata]
        rows = store.index.rows(bare)
        if rows:  # Chroma takes texts without their vectors only with its own embedder
            found = store.collection.get(ids=list(rows), include=["embeddings"])
            store.collection.update(
                ids=found["ids"],
                embeddings=found["embeddings"],
                documents=[rows[i][0] for i in found["ids"]],
                metadatas=cast(Any, [rows[i][1] for i in found["ids"]]),
            )
            store._announce_write()
    store.index.set_meta(chroma_rows=1)


def drop_textless(store: StoreConnection, chunk_ids: list[str]) -> None:
    """Take out chunks without a text: an older store's whose keyword index was lost.

    The next sync embeds their files again.
    """
    log.warning(
        "%d chunks had no text in %s (the keyword index that held it was lost): taken out; "
        "the next sync embeds their files again",
        len(chunk_ids),
        store.location,
    )
    for start in range(0, len(chunk_ids), store.max_batch):
        store.collection.delete(ids=chunk_ids[start : start + store.max_batch])
    store._announce_write()  # other processes reload the vector index without them


def _same_version(metadata: Metadata, indexed: tuple[str, float | None] | None) -> bool:
    """True when Chroma's chunk is the one the keyword index holds.

    An id names its content and position, but an edit earlier in its file moves its offsets
    and changes the file's hash: a server's writer upserts it with a new write stamp, which
    the index must take too. A lean chunk (an older embedded store's) carries neither hash nor
    stamp.
    """
    if indexed is None:
        return False
    content_hash, written = indexed
    return (
        metadata.get("content_hash", content_hash) == content_hash
        and metadata.get("written", written) == written
    )

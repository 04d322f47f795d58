"""Hybrid retrieval against the real store (embedded and server) and the real model."""

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rag.ingest.ingestion import Ingestor
from rag.models.embeddings import Embedder
from rag.pipeline import Pipeline
from rag.retrieval.retriever import Retrieved
from rag.settings import Settings, load_settings
from rag.storage import backends, connection, upkeep
from rag.storage.backends import ServerChunkStore
from rag.storage.store import ChunkStore, open_store
from tests.conftest import SettingsFactory
from tests.docgen import write_mixed_folder, write_pdf
from tests.test_hardening import synthetic_chunks

pytestmark = pytest.mark.slow


def test_keywords_find_what_dense_search_ranks_low(pipeline: Pipeline, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    (docs / "codes.md").write_text("# Error codes\n\nCode XJ-4417 means the pump is blocked.\n")
    pipeline.ingestor.sync([docs])
    retriever = pipeline.retriever_with(min_similarity=-1)
    top = retriever.retrieve("XJ-4417", k=1)[0]
    assert top.metadata["source"] == "codes.md"
    assert top.keyword_score > 0


def test_the_keyword_search_runs_while_chroma_searches(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BM25 needs no question vector: it runs beside the dense search, and ranks the same."""
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    (docs / "codes.md").write_text("# Error codes\n\nCode XJ-4417 means the pump is blocked.\n")
    pipeline.ingestor.sync([docs])
    question = "What does code XJ-4417 mean for the heron's pump?"
    retriever = pipeline.retriever_with(min_similarity=-1)
    retriever.overlap_searches = False
    one_after_the_other = retriever.retrieve(question)
    retriever.overlap_searches = True

    searching = threading.Event()
    search = pipeline.store.index.search

    def search_noted(*args: Any, **kwargs: Any) -> Any:
        searching.set()
        return search(*args, **kwargs)

    query = pipeline.store.query
    met = []

    def query_meeting(*args: Any, **kwargs: Any) -> Any:
        met.append(searching.wait(timeout=5))
        return query(*args, **kwargs)

    monkeypatch.setattr(pipeline.store.index, "search", search_noted)
    monkeypatch.setattr(pipeline.store, "query", query_meeting)
    overlapped = retriever.retrieve(question)
    assert met == [True]
    assert [_ranked(c) for c in overlapped] == [_ranked(c) for c in one_after_the_other]
    assert overlapped[0].metadata["source"] == "codes.md"


def _ranked(chunk: Retrieved) -> tuple[str, float, float, float]:
    return chunk.id, chunk.fused_score, chunk.similarity, chunk.keyword_score


def test_keyword_index_follows_writes_from_another_store(
    ingestor: Ingestor, tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    ingestor.sync([docs])
    # A second pipeline on the same collection: as another process would see it.
    reader = Pipeline(ingestor.settings, embedder=embedder)
    retriever = reader.retriever_with(min_similarity=-1)
    assert retriever.retrieve("kestrel", k=1)[0].keyword_score == 0
    (docs / "birds.md").write_text("# Birds\n\nThe kestrel hovers over the meadow.\n")
    ingestor.sync([docs])
    top = retriever.retrieve("kestrel", k=1)[0]
    assert (top.metadata["source"], top.keyword_score > 0) == ("birds.md", True)
    (docs / "birds.md").unlink()
    ingestor.sync([docs])
    assert all(r.metadata["source"] != "birds.md" for r in retriever.retrieve("kestrel", k=4))
    assert len(reader.store.index) == ingestor.store.count()


def test_a_new_process_searches_the_keyword_index_without_reading_the_store(
    make_settings: SettingsFactory, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    docs = settings.data_dir.parent / "docs"
    write_mixed_folder(docs)
    (docs / "codes.md").write_text("# Error codes\n\nCode XJ-4417 means the pump is blocked.\n")
    with Pipeline(settings, embedder=embedder) as writer:
        writer.ingestor.sync([docs])
        count = writer.store.count()
    assert settings.keywords_path().is_file()

    recent = upkeep.reconcile  # a server's index reads the chunks written lately

    def read_everything(store: ChunkStore, where: Mapping[str, Any] | None = None) -> float:
        assert where is not None, "the keyword index was rebuilt from the store"
        return recent(store, where)

    for module in (connection, backends):  # where it is called
        monkeypatch.setattr(module, "reconcile", read_everything)
    with Pipeline(settings, embedder=embedder) as reader:
        assert len(reader.store.index) == count
        top = reader.retriever_with(min_similarity=-1).retrieve("XJ-4417", k=1)[0]
        assert (top.metadata["source"], top.keyword_score > 0) == ("codes.md", True)


def test_a_write_killed_before_the_keyword_index_is_settled_by_the_next_reader(
    make_settings: SettingsFactory, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    docs = settings.data_dir.parent / "docs"
    write_mixed_folder(docs)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies after Chroma's write, before the index's

    with Pipeline(settings, embedder=embedder) as reader:
        reader.ingestor.sync([docs])
        guide = {i for i, _ in reader.retriever.keyword_hits("tomatoes", 50)}
        assert guide
        (docs / "birds.md").write_text("# Birds\n\nThe kestrel hovers over the meadow.\n")
        writes: list[Callable[[Ingestor], object]] = [
            lambda ingestor: ingestor.sync([docs]),  # adds birds.md
            lambda ingestor: ingestor.remove(str(docs.resolve()), "guide.md"),
        ]
        for write in writes:
            with Pipeline(settings, embedder=embedder) as writer:
                monkeypatch.setattr(writer.store.index, "update", killed)
                with pytest.raises(KeyboardInterrupt):
                    write(writer.ingestor)
            assert reader.store.index.pending()  # the journal names what the write touched
            hits = reader.retriever.keyword_hits("kestrel tomatoes", 50)  # settles it first
            assert reader.store.index.pending() == []
            assert len(reader.store.index) == reader.store.count()
        assert {i for i, _ in hits} & guide == set()
        top = reader.retriever_with(min_similarity=-1).retrieve("kestrel", k=1)[0]
        assert (top.metadata["source"], top.keyword_score > 0) == ("birds.md", True)


def test_chroma_holds_every_chunk_whole_and_a_lost_keyword_index_is_rebuilt_from_it(
    make_settings: SettingsFactory, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    docs = settings.data_dir.parent / "docs"
    write_mixed_folder(docs)
    with Pipeline(settings, embedder=embedder) as pipeline:
        pipeline.ingestor.sync([docs])
        count = pipeline.store.count()
        held = pipeline.store.collection.get(include=["documents", "metadatas"])
        assert len(held["ids"]) == count
        assert None not in (held["documents"] or [])
        assert all(
            {"content_hash", "start_char", "headings"} <= set(m) for m in held["metadatas"] or []
        )
        top = pipeline.retriever_with(min_similarity=-1).retrieve("boiler pressure", k=3)
        assert (top[0].metadata["source"], top[0].metadata["page"]) == ("manual.pdf", 2)
        assert "pressure" in top[0].text.lower()
        only_md = pipeline.retriever_with(min_similarity=-1).retrieve(
            "boiler pressure", k=3, file_types=["md"]
        )
        assert {hit.metadata["file_type"] for hit in only_md} == {"md"}
        by_id = pipeline.store.get([hit.id for hit in top])
        assert {chunk.id: chunk.text for chunk in by_id} == {hit.id: hit.text for hit in top}
    for file in settings.keywords_path().parent.iterdir():
        file.unlink()  # the index lost: it is derived, and rebuilt from Chroma
    with Pipeline(settings, embedder=embedder) as reopened:
        assert (reopened.store.count(), len(reopened.store.index)) == (count, count)
        assert "had no text" not in caplog.text
        again = reopened.retriever_with(min_similarity=-1).retrieve("boiler pressure", k=3)
        assert [hit.id for hit in again] == [hit.id for hit in top]
        report = reopened.ingestor.sync([docs])
        assert report.ok, report.failed
        assert (report.chunks_embedded, report.chunks_in_store) == (0, count)


def test_a_killed_write_is_settled_with_what_chroma_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after Chroma's write and before the index's: the next opening indexes what
    Chroma holds under the ids the journal names."""
    settings = load_settings(data_dir=tmp_path / "data")
    (old,) = synthetic_chunks("/docs", 1, 1, 384)
    with open_store(settings, "test-model") as store:
        store.write(new_chunks=[old])
    new = replace(old, metadata={**old.metadata, "file_hash": "edited"})
    with open_store(settings, "test-model") as store:
        monkeypatch.setattr(store.index, "update", _killed)
        with pytest.raises(KeyboardInterrupt):
            store.write(chunks=[new])
    with open_store(settings, "test-model") as store:
        assert store.index.rows([old.id])[old.id][1]["file_hash"] == "edited"
        assert store.get([old.id])[0].metadata["file_hash"] == "edited"


def _killed(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # the process dies after Chroma's write, before the index's


@pytest.mark.server
def test_machines_sharing_a_chroma_server_each_keep_a_keyword_index_in_step(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    writer_settings, reader_settings, docs = _two_machines(make_settings, tmp_path)
    with (
        Pipeline(writer_settings, embedder=embedder) as writer,
        Pipeline(reader_settings, embedder=embedder) as reader,
    ):
        assert reader_settings.keywords_path() != writer_settings.keywords_path()
        retriever = reader.retriever_with(min_similarity=-1)
        writer.ingestor.sync([docs])
        (docs / "birds.md").write_text("# Birds\n\nThe kestrel hovers over the meadow.\n")
        writer.ingestor.sync([docs])
        top = retriever.retrieve("kestrel", k=1)[0]
        assert (top.metadata["source"], top.keyword_score > 0) == ("birds.md", True)
        # An edit keeps the chunk count: it is seen by its stamp, not by counting.
        (docs / "birds.md").write_text("# Birds\n\nThe osprey dives for fish.\n")
        writer.ingestor.sync([docs])
        assert retriever.keyword_hits("kestrel", 4) == []
        assert retriever.retrieve("osprey", k=1)[0].metadata["source"] == "birds.md"
        # Deletions carry no stamp: the first is seen by counting every id, the next ones
        # (within store.FULL_RECONCILE_S) as a search meets them.
        for name, word in (("birds.md", "osprey"), ("bitterns.md", "bittern")):
            (docs / name).write_text(f"# Birds\n\nThe {word} waits by the water.\n")
            writer.ingestor.sync([docs])
            assert retriever.retrieve(word, k=1)[0].metadata["source"] == name
            (docs / name).unlink()
            writer.ingestor.sync([docs])
            assert all(r.metadata["source"] != name for r in retriever.retrieve(word, k=4))
            assert retriever.keyword_hits(word, 4) == []
            assert len(reader.store.index) == writer.store.count() == len(writer.store.index)


def test_filters_and_floor(pipeline: Pipeline, tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "docs")
    pipeline.ingestor.sync([tmp_path / "docs"])
    unfloored = pipeline.retriever_with(min_similarity=-1)
    only_pdf = unfloored.retrieve("boiler pressure", file_types=["pdf"], k=4)
    assert {r.metadata["file_type"] for r in only_pdf} == {"pdf"}
    only_guide = unfloored.retrieve("When should tomatoes be watered?", sources=["guide.md"])
    assert {r.metadata["source"] for r in only_guide} == {"guide.md"}

    retriever = pipeline.retriever
    assert retriever.retrieve("boiler pressure", k=1)[0].metadata["source"] == "manual.pdf"
    # Nothing in the documents is about this: the relevance floor leaves nothing.
    assert retriever.retrieve("What is the capital of Mongolia?") == []


def test_a_chunk_that_introduces_a_table_is_read_on_into_it(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    # Small chunks, so the page's table lands in the chunk after the sentence introducing it.
    settings = make_settings(chunking={"max_tokens": 40, "overlap_tokens": 0})
    pipeline = Pipeline(settings, embedder=embedder)
    store = pipeline.store
    rows = [f"M{size} bolt {size * 3} Nm" for size in (4, 5, 6, 8, 10, 12)]
    intro = "The following table gives the tightening torque of each compressor bolt size."
    prose = "The compressor housing is cast aluminium and rests on four rubber feet."
    (tmp_path / "docs").mkdir()
    write_pdf(tmp_path / "docs" / "service.pdf", [[prose, intro, *rows], ["Other matters."]])
    assert pipeline.ingestor.sync([tmp_path / "docs"]).ok
    stored = [text for _, text in _texts(store)]
    introducing = next(text for text in stored if "tightening torque" in text)
    assert "M12 bolt" not in introducing  # the premise: the table is in another chunk

    question = "Which tightening torque does each compressor bolt size need?"
    plain = pipeline.retriever_with(read_on=False).retrieve(question)[0]
    assert "tightening torque" in plain.text
    assert "M12 bolt" not in plain.text
    read_on = pipeline.retriever.retrieve(question)
    assert "tightening torque" in read_on[0].text
    assert "M12 bolt 36 Nm" in read_on[0].text
    assert read_on[0].metadata["page"] == 1
    # The chunk read into it is not returned a second time; the next best takes its place.
    assert sum("M12 bolt" in chunk.text for chunk in read_on) == 1
    unfloored = pipeline.retriever_with(min_similarity=-1)
    assert len(unfloored.retrieve(question, k=len(stored))) == len(stored) - 1
    assert len(unfloored.retrieve(question, k=2)) == 2


def _texts(store: ChunkStore) -> list[tuple[str, str]]:
    ids = sorted(store.ids())
    texts = store.texts(ids)
    return [(chunk_id, texts[chunk_id]) for chunk_id in ids]


@pytest.mark.server
def test_a_machine_reads_records_and_listings_from_its_keyword_index(
    make_settings: SettingsFactory,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chromadb.api.models.Collection import Collection

    writer_settings, reader_settings, docs = _two_machines(make_settings, tmp_path)
    root = str(docs.resolve())
    read: list[int] = []  # metadata rows each get() brought from the server
    looked_up: list[str] = []  # the collection looked up again on the server
    chroma_get = Collection.get
    open_collection = ServerChunkStore._open_collection

    def counted_get(collection: Collection, *args: Any, **kwargs: Any) -> Any:
        result = chroma_get(collection, *args, **kwargs)
        if "metadatas" in (kwargs.get("include") or []):
            read.append(len(result["ids"]))
        return result

    def counted_open(store: ServerChunkStore) -> Collection:
        looked_up.append(str(store.settings.data_dir))
        return open_collection(store)

    with (
        Pipeline(writer_settings, embedder=embedder) as writer,
        Pipeline(reader_settings, embedder=embedder) as reader,
    ):
        writer.ingestor.sync([docs])
        assert set(reader.store.records([root])) == {(root, s) for s in writer.store.sources()}
        # In step with the server: records and listings read no chunk from it, and looking
        # files up one at a time does not call it for each file.
        monkeypatch.setattr(Collection, "get", counted_get)
        monkeypatch.setattr(ServerChunkStore, "_open_collection", counted_open)
        records = reader.store.records([root])
        assert all(records[key].chunk_ids for key in records)
        assert len(records) == len(reader.store.sources()) > 3
        assert sum(read) == 0, read
        assert len(looked_up) <= 2, looked_up
        monkeypatch.undo()
        (docs / "birds.md").write_text("# Birds\n\nThe kestrel hovers over the meadow.\n")
        writer.ingestor.sync([docs])
        assert (root, "birds.md") in reader.store.records([root])
        assert reader.store.sources()["birds.md"] == 1
        # A deletion elsewhere is seen before the records are trusted (the counts disagree).
        (docs / "birds.md").unlink()
        writer.ingestor.sync([docs])
        assert (root, "birds.md") not in reader.store.records([root])
        assert "birds.md" not in reader.store.sources()
        assert set(reader.store.sources()) == set(writer.store.sources())


def test_another_machine_sees_an_edit_that_moves_chunks_it_already_holds(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    """An edit keeps the ids of the chunks after it (ids name their content and position),
    but moves their offsets and changes the file's hash: the writer upserts them, and every
    machine's index must take their new metadata, not only their new texts."""
    writer_settings, reader_settings, docs = _two_machines(make_settings, tmp_path)
    sections = [f"# Part {n}\n\n" + f"Section {n} on herons and marshes. " * 30 for n in range(4)]
    birds = docs / "birds.md"
    birds.write_text("\n\n".join(sections))
    root = str(docs.resolve())
    with (
        Pipeline(writer_settings, embedder=embedder) as writer,
        Pipeline(reader_settings, embedder=embedder) as reader,
    ):
        writer.ingestor.sync([docs])
        before = writer.store.records([root])[(root, "birds.md")]
        assert reader.store.records([root])[(root, "birds.md")].chunk_ids == before.chunk_ids
        edited = "# Part 0\n\nHerons nest in reeds. " + sections[0][len("# Part 0\n\n") :]
        birds.write_text("\n\n".join([edited, *sections[1:]]))
        report = writer.ingestor.sync([docs])
        assert report.updated == ["birds.md"]
        after = writer.store.records([root])[(root, "birds.md")]
        kept = sorted(before.chunk_ids & after.chunk_ids)
        assert len(kept) >= 2, "the edit must leave later chunks' content and ids as they were"
        assert after.complete
        seen = reader.store.records([root])[(root, "birds.md")]
        assert seen.versions == after.versions
        assert seen.complete
        written = {c.id: c.metadata for c in writer.store.get(kept)}
        assert {c.id: c.metadata for c in reader.store.get(kept)} == written
        again = reader.ingestor.sync([docs])
        assert (again.added, again.updated, again.removed) == ([], [], [])


def _two_machines(
    make_settings: SettingsFactory, tmp_path: Path
) -> tuple[Settings, Settings, Path]:
    """A writer's and a reader's settings, two machines on one Chroma server, and their docs.

    The reader is another machine: the same collection on the same server, its own data dir.
    """
    writer_settings = make_settings()
    if writer_settings.store.mode != "server":
        pytest.skip("machines share a store through a Chroma server")
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    reader_settings = writer_settings.model_copy(update={"data_dir": tmp_path / "other"})
    return writer_settings, reader_settings, docs

"""Scale figures: stores of one copy of the pydoc corpus (~685 chunks), 10k, 100k and 1M chunks.

Each size is a folder of copies of the shared pydoc corpus, every copy varied (``varied``:
by default each copy of a file is a new document on its topic, its sentences redrawn from the
file; one word in twenty gets the copy's number, so vocabularies differ too), ingested by the
real pipeline (``rag.pipeline``: loaders, chunker, store, keyword index) into embedded Chroma.
``--variation words`` keeps each file and varies only its words: every passage then has as
many near-duplicates as there are copies, HNSW's worst case.

**Vectors are not the model's:** embedding a million chunks on 2 CPU cores would take hours,
so a hashing embedder stands in, for documents and questions alike: each word is a fixed
random vector (seeded by the word), a text the normalized sum of its words' vectors. Texts
sharing words are near, as with the model. The retrieval latencies include the real model's
time: it embeds each question too, and the stand-in's vector is searched. HNSW's graph
parameters come from the app's settings, e.g. ``RAG_STORE__HNSW__MAX_NEIGHBORS=32`` in the
environment, and so do the processes that load files beside the embedding
(``RAG_INGEST__PREPARE_WORKERS=1``).

At each size, every figure from a new process (its own peak memory):
- full ingest: seconds, chunks/s apart from embedding (the stand-in's time taken out), peak RSS;
- re-ingest of the unchanged corpus: seconds, as a share of the full ingest, peak RSS;
- a new process's first query: seconds from its start (imports, model, store, index) to the
  first hybrid retrieval, of which the embedding model's load, and its RSS then;
- hybrid retrieval (the app's settings) over the pydoc questions, p50 and p95, 3 rounds, the
  model's time for the question in; against BM25 after Chroma's search, as the retriever
  did before it ran BM25 beside it;
- listing the documents, taking one out, and the sync that puts it back; and meanwhile, in
  another process that had answered a question, the next queries (it reopens the store);
- dense recall@10 against exact search with numpy over every stored vector, and the dense
  query's own p50, at each ``--ef-search`` (Chroma's HNSW ``ef_search``; the app's default
  is 1,600). Strict (the very ids), and with ties counted as ann-benchmarks counts them.
  ``--check-stand-in`` first compares the stand-in's recall with the real model's;
- ``--graphs M/EFC,...``: other HNSW graphs (``max_neighbors``/``ef_construction``) built from
  the store's own vectors in vectors-only collections, each with its build time (vectors/s)
  against the first's, and its recall and query p50 at each ``--ef-search``;
- ``--write-costs CHUNKS``: Chroma's own ``add`` of the store's first chunks, in the
  pipeline's groups, holding everything (what the store writes), all but the texts, the
  vectors and the filter fields, or vectors alone: the floor the store puts under an
  ingest, against a GPU's embedding time; and everything again on one core
  (Chroma inserts into its graph on every core: what more cores would give).
Ratios are against the one-copy store, built in the same run.

Then parallel writers: 1, 2 and 4 ingest processes, each a machine of its own (its own data
dir and keyword index), feed one Chroma server (``chroma run`` on 127.0.0.1) with the same
corpus split between them (``--writer-copies`` copies in 4 parts); chunks/s of all of them
together, against one writer.

Usage: python bench/bench_scale.py [--sizes 685,10000,100000,1000000] [--writer-copies 32]
           [--ef-search 100,400,1600] [--phases ingest,query,recall,parts] [--work DIR]
           [--variation resample|words] [--graphs M/EFC,...] [--write-costs CHUNKS]
           [--json FILE]
       (--sizes "" or --writer-copies 0 leaves a part out; without the ingest phase, the
       stores of an earlier run are measured again)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np

from rag.models.embeddings import Embedder
from rag.settings import Settings, load_settings
from rag.storage.keywords import keywords

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval" / "pydoc"
GPU_CHUNKS_PER_S = 2000  # the embedding model on a data-centre GPU, for the projection
BASE_CHUNKS = 685  # chunks of one copy of the corpus, as the pipeline cuts it today
DIMENSION = 384
FILTERED_BY = ("source", "file_type")  # what dense searches filter by (rag.retrieval.retriever)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?:])\s+")


class HashingEmbedder(Embedder):
    """The stand-in model: a text is the normalized sum of its words' fixed random vectors."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.embedding)
        self._words: dict[str, np.ndarray] = {}
        self.seconds = 0.0  # spent embedding, to take out of the ingest's time
        self.in_model_time = False  # the real model embeds the texts too, its vectors unused

    @cached_property
    def name(self) -> str:
        """Not the real model's name: a store built with it is never mistaken for a real one."""
        return "bench-hashing-384"

    def embed(self, texts: list[str], *args: Any, **kwargs: Any) -> np.ndarray:
        """Unit vectors, one row per text."""
        if self.in_model_time:  # a question takes as long as in the app, and overlaps as there
            super().embed(texts)
        started = time.perf_counter()
        vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            words = keywords(text) or ["empty"]
            vectors[row] = np.sum([self._word(word) for word in words], axis=0)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.seconds += time.perf_counter() - started
        return vectors

    def _word(self, word: str) -> np.ndarray:
        vector = self._words.get(word)
        if vector is None:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vector = np.random.default_rng(seed).standard_normal(DIMENSION).astype(np.float32)
            self._words[word] = vector
        return vector


def write_corpus(folder: Path, copies: int, variation: str, first: int = 0) -> None:
    """Copies ``first`` to ``first + copies - 1`` of the pydoc corpus under ``folder``.

    Each copy is varied by its number; a folder already complete is kept.
    """
    done = folder / ".complete"
    if done.exists() and done.read_text() == f"{variation}:{first}+{copies}":
        return
    shutil.rmtree(folder, ignore_errors=True)  # another set of copies: none of it stays
    folder.mkdir(parents=True)
    sources = sorted((SHARED / "corpus").glob("*.txt"))
    texts = {path.name: path.read_text() for path in sources}
    for copy in range(first, first + copies):
        target = folder / f"copy{copy:05d}"
        target.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (target / name).write_text(varied(text, copy, name, variation))
    done.write_text(f"{variation}:{first}+{copies}")


def varied(text: str, copy: int, name: str, variation: str) -> str:
    """Copy ``copy`` of one corpus file (copy 0: the file itself).

    "resample" (the default): a new document on the file's topic. Each sentence is replaced
    by one drawn at random from the same file, paragraphs kept, so the copy's chunks are new
    mixes of the file's sentences. "words": the file itself with one word in twenty given the
    copy's number, so a passage has as many near-duplicates (cosine ~0.97) as there are copies:
    the worst case for HNSW, whose links among near-duplicates crowd each other out.
    Either way one word in twenty gets the copy's number, so each copy's vocabulary differs.
    """
    if copy == 0:
        return text
    rng = random.Random(f"{copy}/{name}")
    if variation == "resample":
        paragraphs = text.split("\n\n")
        sentences = [s for p in paragraphs for s in _SENTENCE.split(p) if s.strip()]
        text = "\n\n".join(
            " ".join(rng.choice(sentences) for _ in _SENTENCE.split(p)) for p in paragraphs
        )
    return _WORD.sub(lambda m: m[0] + str(copy) if rng.random() < 0.05 else m[0], text)


def settings_for(work: Path, server: str = "") -> Settings:
    """The app's settings, with the store in ``work``, or on a server ('PORT/COLLECTION')."""
    if not server:
        return load_settings(data_dir=work / "data")
    port, collection = server.split("/")
    store = {"mode": "server", "collection": collection, "server": {"port": int(port)}}
    return load_settings(data_dir=work / "data", store=store)


def rss_mb() -> float:
    """Resident memory now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def questions() -> list[str]:
    """The pydoc eval's questions."""
    lines = (SHARED / "qa.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


# --- the phases, each run in a process of its own ---------------------------------------------


def phase_ingest(work: Path, server: str = "", parts: list[Path] | None = None) -> dict[str, Any]:
    """Sync the corpus into the store: the full ingest the first time, a re-ingest after."""
    from rag.pipeline import Pipeline

    settings = settings_for(work, server)
    embedder = HashingEmbedder(settings)
    with Pipeline(settings, embedder=embedder) as pipeline:
        writing = [0.0]
        write = pipeline.store.write

        def timed_write(*args: Any, **kwargs: Any) -> None:
            begun = time.perf_counter()
            write(*args, **kwargs)
            writing[0] += time.perf_counter() - begun

        pipeline.store.write = timed_write  # type: ignore[method-assign]
        report = pipeline.ingestor.sync(parts or [work / "corpus"])
    assert report.ok, report.failed[:3]
    chunks = report.chunks_embedded + report.chunks_reused
    rest = report.seconds - embedder.seconds
    return {
        "seconds": report.seconds,
        "chunks_written": chunks,
        "chunks_in_store": report.chunks_in_store,
        "embedding_seconds": embedder.seconds,
        "writing_seconds": writing[0],  # Chroma and the keyword index
        "chunks_per_s_apart_from_embedding": chunks / rest if chunks else None,
        "prepare_workers": settings.ingest.prepare_workers,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_query(work: Path, started: float) -> dict[str, Any]:
    """First query of a new process, then latency over the questions.

    The latencies include the real model's embedding of the question (the stand-in's vector is
    searched), and are taken three ways, in turn for each question: as the app retrieves (BM25
    beside Chroma's search), with BM25 after it, and with the stand-in's time for the question
    instead of the model's.
    """
    from rag.pipeline import Pipeline

    settings = settings_for(work)
    embedder = HashingEmbedder(settings)
    model_started = time.perf_counter()
    embedder.tokenizer  # noqa: B018  (the real model's tokenizer: what a new process loads)
    model_s = time.perf_counter() - model_started
    asked = questions()
    ways = {"app": (True, True), "serial": (False, True), "stand_in": (True, False)}
    latencies: dict[str, list[float]] = {way: [] for way in ways}
    with Pipeline(settings, embedder=embedder) as pipeline:
        retriever = pipeline.retriever
        retriever.retrieve(asked[0])
        first_s = time.time() - started
        first_rss = rss_mb()
        embedder.in_model_time = True
        for question in asked:  # the model's first pass at each length is many times slower
            retriever.retrieve(question)
        for _ in range(3):
            for question in asked:
                for way, (overlap, in_model_time) in ways.items():
                    retriever.overlap_searches = overlap
                    embedder.in_model_time = in_model_time
                    begun = time.perf_counter()
                    retriever.retrieve(question)
                    latencies[way].append(time.perf_counter() - begun)
    figures = {
        "first_query_s": first_s,
        "tokenizer_load_s": model_s,
        "rss_after_first_query_mb": first_rss,
        "peak_rss_mb": peak_rss_mb(),
    }
    for way, times in latencies.items():
        times.sort()
        prefix = "retrieval" if way == "app" else f"retrieval_{way}"
        figures[f"{prefix}_p50_ms"] = 1000 * times[len(times) // 2]
        figures[f"{prefix}_p95_ms"] = 1000 * times[int(len(times) * 0.95)]
    return figures


def phase_parts(work: Path) -> dict[str, Any]:
    """The other parts at this size: list the documents, take one out, put it back."""
    from rag.pipeline import Pipeline

    settings = settings_for(work)
    with Pipeline(settings, embedder=HashingEmbedder(settings)) as pipeline:
        began = time.perf_counter()
        listed = pipeline.store.sources()
        listing_s = time.perf_counter() - began
        root = str((work / "corpus").resolve())
        source = next(iter(listed))
        began = time.perf_counter()
        removed = pipeline.ingestor.remove(root, source)
        removal_s = time.perf_counter() - began
        assert removed > 0, (root, source)
        began = time.perf_counter()
        report = pipeline.ingestor.sync([work / "corpus"])  # finds it gone and adds it back
        resync_s = time.perf_counter() - began
        assert report.added == [source], report.summary()
    return {
        "documents_listed": len(listed),
        "listing_s": listing_s,
        "removal_s": removal_s,
        "chunks_removed": removed,
        "sync_adding_it_back_s": resync_s,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_reader(work: Path) -> dict[str, Any]:
    """A process answering questions while another one writes: its queries after the write.

    It opens the store and answers a question, says "ready", and waits for a line on its input
    (another process has written meanwhile); then it answers three more. An embedded store
    reopens its client after another process's write, and Chroma loads its vector index anew.
    """
    from rag.pipeline import Pipeline

    settings = settings_for(work)
    asked = questions()
    with Pipeline(settings, embedder=HashingEmbedder(settings)) as pipeline:
        pipeline.retriever.retrieve(asked[0])
        print("ready", flush=True)
        sys.stdin.readline()
        seconds = []
        for question in asked[1:4]:
            begun = time.perf_counter()
            pipeline.retriever.retrieve(question)
            seconds.append(time.perf_counter() - begun)
    return {"query_after_a_write_s": seconds[0], "next_queries_s": seconds[1:]}


def phase_recall(work: Path, ef_search: int) -> dict[str, Any]:
    """Dense recall@10 and the dense query's p50 at one ``ef_search``.

    One process for each value: Chroma keeps a loaded vector index for the life of the
    process, with the ``ef_search`` it was loaded with.
    """
    from rag.pipeline import Pipeline

    settings = settings_for(work)
    hnsw = settings.store.hnsw.model_copy(update={"ef_search": ef_search})
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"hnsw": hnsw})}
    )
    embedder = HashingEmbedder(settings)
    vectors = embedder.embed(questions())
    with Pipeline(settings, embedder=embedder) as pipeline:
        exact = exact_nearest(pipeline, vectors, work / "data" / "exact-nearest.json")
        pipeline.store.query(vectors[0], 10)  # the vector index loads

        def search(vector: np.ndarray) -> list[tuple[str, float]]:
            hits = pipeline.store.query(vector, settings.retrieval.candidates)[:10]
            return [(hit.id, float(hit.embedding @ vector)) for hit in hits]

        return recall_of(search, vectors, exact)


def recall_of(
    search: Any, vectors: np.ndarray, exact: list[tuple[list[str], float]]
) -> dict[str, Any]:
    """Recall@10 of ``search`` (a vector -> its 10 (id, similarity)) against ``exact``, strict
    and with ties counted, and its p50."""
    times, strict, tolerant = [], 0, 0
    for vector, (nearest, tenth) in zip(vectors, exact, strict=True):
        begun = time.perf_counter()
        returned = search(vector)
        times.append(time.perf_counter() - begun)
        strict += len({chunk_id for chunk_id, _ in returned} & set(nearest))
        tolerant += sum(similarity >= tenth - 1e-3 for _, similarity in returned)
    asked = 10 * len(vectors)
    return {
        "recall_at_10": strict / asked,
        "recall_at_10_with_ties": tolerant / asked,
        "dense_query_p50_ms": 1000 * statistics.median(times),
    }


def exact_nearest(
    pipeline: Any, question_vectors: np.ndarray, cache: Path
) -> list[tuple[list[str], float]]:
    """Each question's exact 10 nearest chunks (numpy over every stored vector) and the 10th's
    similarity; kept in ``cache`` for the next process.

    Recall counts the very ids (strict), or any chunk as near as the exact 10th less 0.001
    (ann-benchmarks' definition, "with ties"): a chunk's copies are nearly equidistant from
    a question, and which ten of them are nearest is decided by rounding.
    """
    if cache.exists():
        return [(ids, tenth) for ids, tenth in json.loads(cache.read_text())]
    found = nearest_ten(question_vectors, *stored_vectors(pipeline, cache.parent))
    cache.write_text(json.dumps(found))
    return found


def nearest_ten(
    question_vectors: np.ndarray, ids: list[str], vectors: np.ndarray
) -> list[tuple[list[str], float]]:
    """Each question's exact 10 nearest of ``vectors`` (numpy) and the 10th's similarity."""
    similarities = question_vectors @ vectors.T
    order = np.argsort(-similarities, axis=1)[:, :10]
    return [([ids[i] for i in row], float(similarities[n, row[-1]])) for n, row in enumerate(order)]


def searching(collection: Any) -> Any:
    """A ``recall_of`` search over a vectors-only Chroma collection: its 10 nearest."""

    def search(vector: np.ndarray) -> list[tuple[str, float]]:
        found = collection.query(query_embeddings=vector[None], n_results=10, include=["distances"])
        distances = (found["distances"] or [[]])[0]
        return [(chunk_id, 1 - d) for chunk_id, d in zip(found["ids"][0], distances, strict=True)]

    return search


def stored_vectors(pipeline: Any, folder: Path) -> tuple[list[str], np.ndarray]:
    """Every stored chunk's id and vector, kept under ``folder`` for the next process (reading
    them from Chroma takes minutes at 1M)."""
    ids_file, vectors_file = folder / "bench-ids.json", folder / "bench-vectors.npy"
    if vectors_file.exists():
        return json.loads(ids_file.read_text()), np.load(vectors_file, mmap_mode="r")
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for chunk_id, vector in pipeline.store.vectors():
        ids.append(chunk_id)
        rows.append(vector)
    vectors = np.stack(rows)
    np.save(vectors_file, vectors)
    ids_file.write_text(json.dumps(ids))
    return ids, vectors


def phase_graph(work: Path, graph: str, ef_searches: list[int]) -> dict[str, Any]:
    """Build a vectors-only Chroma collection of the store's vectors with the HNSW graph
    ``graph`` (``MAX_NEIGHBORS/EF_CONSTRUCTION``), once; its build time, and its recall at each
    ``ef_search``, each measured in a process of its own."""
    import chromadb

    from rag.pipeline import Pipeline

    max_neighbors, ef_construction = (int(part) for part in graph.split("/"))
    folder = work / "graphs" / f"{max_neighbors}-{ef_construction}"
    settings = settings_for(work)
    with Pipeline(settings, embedder=HashingEmbedder(settings)) as pipeline:
        ids, vectors = stored_vectors(pipeline, work / "data")
        exact_nearest(
            pipeline,
            HashingEmbedder(settings).embed(questions()),
            work / "data" / "exact-nearest.json",
        )
    built = folder / "built.json"
    if not built.exists():
        shutil.rmtree(folder, ignore_errors=True)
        client = chromadb.PersistentClient(path=str(folder))
        hnsw = {
            "space": "cosine",
            "max_neighbors": max_neighbors,
            "ef_construction": ef_construction,
        }
        collection = client.create_collection(
            "graph", configuration=cast(Any, {"hnsw": hnsw}), embedding_function=None
        )
        begun = time.perf_counter()
        for start in range(0, len(ids), 5000):
            collection.add(
                ids=ids[start : start + 5000], embeddings=np.asarray(vectors[start : start + 5000])
            )
        built.write_text(json.dumps({"build_s": time.perf_counter() - begun, "vectors": len(ids)}))
        del client
    figures: dict[str, Any] = json.loads(built.read_text())
    figures["vectors_per_s"] = figures["vectors"] / figures["build_s"]
    figures["recall"] = {
        ef: in_process("graph-recall", work, "--graph", graph, "--ef-search", str(ef))
        for ef in ef_searches
    }
    return figures


def phase_graph_recall(work: Path, graph: str, ef_search: int) -> dict[str, Any]:
    """Dense recall@10 and query p50 of a graph that ``phase_graph`` built, at one ``ef_search``."""
    import chromadb

    folder = work / "graphs" / graph.replace("/", "-")
    collection = chromadb.PersistentClient(path=str(folder)).get_collection("graph")
    collection.modify(configuration={"hnsw": {"ef_search": ef_search}})
    settings = settings_for(work)
    asked = HashingEmbedder(settings).embed(questions())
    exact = exact_nearest(None, asked, work / "data" / "exact-nearest.json")
    collection.query(query_embeddings=asked[:1], n_results=10, include=[])  # the index loads
    return recall_of(searching(collection), asked, exact)


def phase_write_costs(work: Path, chunks: int, cores: int) -> dict[str, Any]:
    """What Chroma's own ``add`` costs, by what it is given: the store's first ``chunks``
    chunks (vectors, metadata, texts) added in the pipeline's groups to new collections with
    the app's HNSW settings, holding everything (what the store gives Chroma), everything but the
    texts, the vectors and what dense searches filter by, or vectors alone.
    The floor that the store puts under an ingest, whatever the rest of the pipeline does.

    ``cores``: this process runs on that many cores (Chroma sizes its pool of insert threads
    by them), and measures everything alone; 0: every core, every set.
    """
    if cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import chromadb

    from rag.pipeline import Pipeline

    settings = settings_for(work)
    with Pipeline(settings, embedder=HashingEmbedder(settings)) as pipeline:
        read = pipeline.store.get(sorted(pipeline.store.ids())[:chunks])
    ids = [chunk.id for chunk in read]
    vectors = np.asarray([chunk.embedding for chunk in read], dtype=np.float32)
    metadatas: list[Any] = [chunk.metadata for chunk in read]
    filtered: list[Any] = [{key: m[key] for key in FILTERED_BY if key in m} for m in metadatas]
    documents = [chunk.text for chunk in read]
    hnsw = settings.store.hnsw
    configuration: Any = {"hnsw": hnsw.model_dump() | {"space": "cosine"}}
    group = settings.ingest.group_chunks
    figures: dict[str, Any] = {"chunks": len(ids)}
    givens = ["everything", "no texts", "vectors and filters", "vectors only"]
    for given in ["everything"] if cores else givens:
        folder = work / "write-costs" / given.replace(" ", "-")
        shutil.rmtree(folder, ignore_errors=True)
        client = chromadb.PersistentClient(path=str(folder))
        collection = client.create_collection(
            "costs", configuration=configuration, embedding_function=None
        )
        begun = time.perf_counter()
        for start in range(0, len(ids), group):
            end = start + group
            collection.add(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                metadatas=(
                    None
                    if given == "vectors only"
                    else filtered[start:end]
                    if given == "vectors and filters"
                    else metadatas[start:end]
                ),
                documents=documents[start:end] if given == "everything" else None,
            )
        figures[given] = len(ids) / (time.perf_counter() - begun)
        del collection, client
    shutil.rmtree(work / "write-costs", ignore_errors=True)
    return figures


def check_stand_in(
    work: Path, copies: int, variation: str, ef_searches: list[int]
) -> dict[str, dict[int, dict[str, Any]]]:
    """Dense recall@10 of the real model's vectors and of the stand-in's, on the same chunks.

    ``copies`` copies of the corpus, varied and chunked as for the stores, each set of vectors
    in a Chroma collection of its own with the app's HNSW settings: how far the stand-in's
    recall figures can be trusted. The real model embeds every chunk (~80 chunks/s here), once:
    its vectors are kept in ``work`` for a run with another graph (``RAG_STORE__HNSW__...``).
    """
    import chromadb

    from rag.documents.loaders import load
    from rag.ingest.ingestion import make_chunker

    settings = load_settings()
    model = Embedder(settings.embedding)
    chunker = make_chunker(settings, model)
    write_corpus(work / "corpus", copies, variation)
    texts = [
        chunk.text
        for path in sorted((work / "corpus").rglob("*.txt"))
        for chunk in chunker.split(load(path, path.read_bytes()))
    ]
    print(f"  {len(texts)} chunks", flush=True)
    hnsw = settings.store.hnsw
    client = chromadb.EphemeralClient()
    recalls: dict[str, dict[int, dict[str, Any]]] = {}
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    kept = work / f"model-vectors-{digest}.npy"
    for name, embedder in (("model", model), ("stand-in", HashingEmbedder(settings))):
        if name == "model" and kept.exists():
            vectors = np.load(kept)
        else:
            vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
            if name == "model":
                np.save(kept, vectors)
        asked = np.asarray(embedder.embed(questions()), dtype=np.float32)
        exact = nearest_ten(asked, [str(i) for i in range(len(vectors))], vectors)
        recalls[name] = {}
        for ef in ef_searches:
            configuration: Any = {"hnsw": hnsw.model_dump() | {"space": "cosine", "ef_search": ef}}
            collection = client.create_collection(
                f"{name}-{ef}", configuration=configuration, embedding_function=None
            )
            for start in range(0, len(vectors), 5000):
                block = vectors[start : start + 5000]
                ids = [str(start + n) for n in range(len(block))]
                collection.add(ids=ids, embeddings=block)
            recalls[name][ef] = recall_of(searching(collection), asked, exact)
        by_ef = {
            ef: f"{r['recall_at_10']:.3f} (ties counted {r['recall_at_10_with_ties']:.3f})"
            for ef, r in recalls[name].items()
        }
        print(f"  {name}: recall@10 by ef_search {by_ef}", flush=True)
    return recalls


def real_model() -> dict[str, float]:
    """The real model's costs the stand-in leaves out: its load, a question, a chunk."""
    began = time.perf_counter()
    embedder = Embedder(load_settings().embedding)
    embedder.embed(["load the model"])
    load_s = time.perf_counter() - began
    asked = questions()
    embedder.embed(asked)
    times = []
    for question in asked:
        begun = time.perf_counter()
        embedder.embed([question])
        times.append(time.perf_counter() - begun)
    texts = [path.read_text()[:2000] for path in sorted((SHARED / "corpus").glob("*.txt"))]
    begun = time.perf_counter()
    embedder.embed(texts)
    return {
        "load_s": load_s,
        "question_ms": 1000 * statistics.median(times),
        "chunks_per_s": len(texts) / (time.perf_counter() - begun),
    }


# --- the driver ----------------------------------------------------------------------------------


def in_process(phase: str, work: Path, *options: str) -> dict[str, Any]:
    """Run one phase in a new Python process; its figures."""
    return finished(started(phase, work, *options))


def started(
    phase: str, work: Path, *options: str, stdin: int | None = None
) -> subprocess.Popen[str]:
    """A new Python process running one phase."""
    command = [sys.executable, __file__, "--phase", phase, "--work", str(work)]
    command += ["--started", repr(time.time()), *options]
    return subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen[str], told: str | None = None) -> dict[str, Any]:
    """The figures a phase's process printed, once it ends (``told``: its input)."""
    out, err = process.communicate(told)
    if process.returncode != 0:
        raise SystemExit(f"phase {process.args!r} failed:\n{err[-3000:]}")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def measure_writers(work: Path, copies: int, variation: str) -> dict[str, Any]:
    """Chunks/s of 1, 2 and 4 ingest processes writing one Chroma server, the corpus split."""
    sys.path.insert(0, str(ROOT))
    from tests.servers import free_port, start_chroma

    parts = [work / "corpus" / f"part{n}" for n in range(4)]
    for n, part in enumerate(parts):
        write_corpus(part, copies // 4, variation, first=n * (copies // 4))
    shutil.rmtree(work / "server", ignore_errors=True)
    port = free_port()
    server = start_chroma(work / "server" / "db", port, work / "server.log")
    figures: dict[str, Any] = {}
    try:
        for writers in (1, 2, 4):
            collection = f"writers-{writers}"
            began = time.perf_counter()
            processes = [
                started(
                    "ingest",
                    work / "machines" / f"{writers}-{n}",
                    "--server",
                    f"{port}/{collection}",
                    "--parts",
                    ",".join(str(part) for part in parts[n::writers]),
                )
                for n in range(writers)
            ]
            reports = [finished(process) for process in processes]
            seconds = time.perf_counter() - began
            chunks = max(report["chunks_in_store"] for report in reports)
            figures[str(writers)] = {"seconds": seconds, "chunks": chunks}
            print(f"  {writers} writers: {chunks} chunks in {seconds:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    one = figures["1"]["chunks"] / figures["1"]["seconds"]
    for name, result in figures.items():
        result["chunks_per_s"] = result["chunks"] / result["seconds"]
        result["over_one_writer"] = result["chunks_per_s"] / one
        print(
            f"{name} writers into one Chroma server: {result['chunks_per_s']:.0f} chunks/s, "
            f"x{result['over_one_writer']:.2f} one writer"
        )
    return figures


def measure(
    size: int,
    work: Path,
    phases: set[str],
    ef_searches: str,
    variation: str,
    graphs: list[str],
    write_costs: int,
) -> dict[str, Any]:
    """Every figure for a store of about ``size`` chunks (of these phases)."""
    copies = max(1, round(size / BASE_CHUNKS))
    print(f"\n{size} chunks ({copies} copies, {copies * 79} files):", flush=True)
    figures: dict[str, Any] = {"copies": copies}
    if "ingest" in phases:
        write_corpus(work / "corpus", copies, variation)
        shutil.rmtree(work / "data", ignore_errors=True)  # the full ingest starts from nothing
        full = in_process("ingest", work)
        print(f"  full ingest {full['seconds']:.1f} s, {full['chunks_in_store']} chunks")
        again = in_process("ingest", work)
        assert again["chunks_written"] == 0, again
        figures |= {"full_ingest": full, "reingest": again}
        figures["reingest_over_full_ingest"] = again["seconds"] / full["seconds"]
    if "query" in phases:
        figures |= in_process("query", work)
    if "recall" in phases:
        figures["recall"] = {
            ef: in_process("recall", work, "--ef-search", ef) for ef in ef_searches.split(",")
        }
    if "parts" in phases:  # while another process answers questions
        reader = started("reader", work, stdin=subprocess.PIPE)
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "ready":
            finished(reader)  # says why it failed
        figures["parts"] = in_process("parts", work)
        figures["reader"] = finished(reader, "the store was written\n")
    if write_costs:
        costs = ("write-costs", work, "--write-costs", str(write_costs))
        figures["write_costs"] = in_process(*costs)
        figures["write_costs_one_core"] = in_process(*costs, "--cores", "1")
    figures["graphs"] = {
        graph: in_process("graph", work, "--graph", graph, "--ef-search", ef_searches)
        for graph in graphs
    }
    print(json.dumps(figures, indent=1), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="685,10000,100000,1000000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    parser.add_argument("--writer-copies", type=int, default=32)
    parser.add_argument("--ef-search", default="100,400,1600")
    parser.add_argument("--phases", default="ingest,query,recall,parts")
    parser.add_argument("--variation", choices=["resample", "words"], default="resample")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--check-stand-in",
        type=int,
        default=0,
        metavar="COPIES",
        help="first compare the stand-in's dense recall with the real model's on this many copies",
    )
    parser.add_argument(
        "--graphs",
        default="",
        metavar="M/EFC,...",
        help="also build each HNSW graph (max_neighbors/ef_construction) from the store's "
        "vectors, and measure its build and recall",
    )
    parser.add_argument(
        "--phase",
        choices=[
            "ingest",
            "query",
            "recall",
            "parts",
            "reader",
            "graph",
            "graph-recall",
            "write-costs",
        ],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--graph", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--write-costs",
        type=int,
        default=0,
        metavar="CHUNKS",
        help="also measure Chroma's add on this many of each store's chunks, by what it holds",
    )
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server", default="", help=argparse.SUPPRESS)
    parser.add_argument("--parts", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_phase: dict[str, Any] = {  # one phase, in a process of its own (see ``started``)
        "ingest": lambda: phase_ingest(
            args.work, args.server, [Path(part) for part in args.parts.split(",") if part]
        ),
        "query": lambda: phase_query(args.work, args.started),
        "parts": lambda: phase_parts(args.work),
        "reader": lambda: phase_reader(args.work),
        "recall": lambda: phase_recall(args.work, int(args.ef_search)),
        "graph": lambda: phase_graph(
            args.work, args.graph, [int(ef) for ef in args.ef_search.split(",")]
        ),
        "graph-recall": lambda: phase_graph_recall(args.work, args.graph, int(args.ef_search)),
        "write-costs": lambda: phase_write_costs(args.work, args.write_costs, args.cores),
    }
    if args.phase:
        print(json.dumps(run_phase[args.phase]()))
        return

    sizes = [int(size) for size in args.sizes.split(",") if size]
    phases = set(args.phases.split(","))
    graphs = [graph for graph in args.graphs.split(",") if graph]
    work = args.work / args.variation
    check: dict[str, dict[int, dict[str, Any]]] = {}
    if args.check_stand_in:
        print(f"\nthe stand-in against the real model ({args.check_stand_in} copies):", flush=True)
        efs = [int(ef) for ef in args.ef_search.split(",")]
        check = check_stand_in(work / "check", args.check_stand_in, args.variation, efs)
    results = {
        size: measure(
            size, work / str(size), phases, args.ef_search, args.variation, graphs, args.write_costs
        )
        for size in sizes
    }
    writers = {}
    if args.writer_copies:
        print(f"\nparallel writers ({args.writer_copies} copies in 4 parts):", flush=True)
        writers = measure_writers(work / "writers", args.writer_copies, args.variation)
    if args.json:
        figures = {"stand_in_check": check, "sizes": results, "writers": writers}
        args.json.write_text(json.dumps(figures, indent=1))
    if not sizes:
        return
    base = results[sizes[0]]
    model = real_model()
    print(
        f"\nthe real model (left out above): loads in {model['load_s']:.2f} s, embeds a question "
        f"in {model['question_ms']:.1f} ms (median), {model['chunks_per_s']:.0f} chunks/s"
    )
    for size, r in results.items():
        print(f"{size:>8} chunks:")
        if "full_ingest" in r:
            full, again = r["full_ingest"], r["reingest"]
            chunks, rest = full["chunks_in_store"], full["chunks_per_s_apart_from_embedding"]
            real_full_s = (
                full["seconds"] - full["embedding_seconds"] + chunks / model["chunks_per_s"]
            )
            r["reingest_over_full_ingest_with_the_real_model"] = again["seconds"] / real_full_s
            gpu = GPU_CHUNKS_PER_S
            r["gpu_full_ingest_over_embedding_projected"] = (1 / gpu + 1 / rest) * gpu
            print(
                f"  full ingest {full['seconds']:.1f} s: {rest:.0f} chunks/s apart from embedding"
                f" (with a GPU embedding {gpu}/s, in line: x"
                f"{r['gpu_full_ingest_over_embedding_projected']:.2f} the embedding alone), "
                f"peak {full['peak_rss_mb']:.0f} MB\n"
                f"  re-ingest {again['seconds']:.2f} s: {r['reingest_over_full_ingest']:.4f} of "
                f"the full ingest ({r['reingest_over_full_ingest_with_the_real_model']:.4f} of one"
                f" with the real model on this CPU), peak {again['peak_rss_mb']:.0f} MB"
            )
            # On a GPU the pipeline writes one group while the GPU embeds the next; Chroma's add
            # holds Python's lock, so reading and chunking overlap the writes only when worker
            # processes do them (ingest.prepare_workers), and the model only when it runs in a
            # process of its own (ingest.embedding_process; see bench_embed_process.py). What
            # is left besides the embedding is then what this process did.
            embedding_s = chunks / gpu
            writing_s = full.get("writing_seconds")
            if writing_s is not None:
                rest_s = full["seconds"] - full["embedding_seconds"]
                overlapped = max(embedding_s, rest_s) / embedding_s
                r["gpu_full_ingest_over_embedding_overlapped"] = overlapped
                print(
                    f"  of the full ingest: writing (Chroma and the keyword index) {writing_s:.1f}"
                    f" s, reading and chunking (or waiting for the workers that do) "
                    f"{rest_s - writing_s:.1f} s, with {full['prepare_workers']} worker "
                    f"processes; on a GPU, the rest beside the embedding: x{overlapped:.2f} the "
                    "embedding alone"
                )
        if "retrieval_p50_ms" in r:
            print(
                f"  hybrid retrieval, the model's question time in, p50 {r['retrieval_p50_ms']:.1f}"
                f" ms (x{r['retrieval_p50_ms'] / base['retrieval_p50_ms']:.2f} the first size), "
                f"p95 {r['retrieval_p95_ms']:.1f} ms\n  with BM25 after Chroma's search: p50 "
                f"{r['retrieval_serial_p50_ms']:.1f} ms, x"
                f"{r['retrieval_serial_p50_ms'] / r['retrieval_p50_ms']:.2f} the app's; p95 "
                f"{r['retrieval_serial_p95_ms']:.1f} ms, x"
                f"{r['retrieval_serial_p95_ms'] / r['retrieval_p95_ms']:.2f}; with the stand-in's "
                f"question time instead of the model's: p50 {r['retrieval_stand_in_p50_ms']:.1f},"
                f" p95 {r['retrieval_stand_in_p95_ms']:.1f} ms\n  a new process's first query "
                f"after {r['first_query_s']:.2f} s (+ the model's load), RSS then "
                f"{r['rss_after_first_query_mb']:.0f} MB"
            )
        if "parts" in r:
            parts = r["parts"]
            print(
                f"  listing {parts['documents_listed']} documents {parts['listing_s']:.2f} s; "
                f"taking one out ({parts['chunks_removed']} chunks) {parts['removal_s']:.2f} s; "
                f"a sync that adds it back {parts['sync_adding_it_back_s']:.2f} s"
            )
            reader = r["reader"]
            print(
                "  a process answering questions meanwhile: its next query "
                f"{reader['query_after_a_write_s']:.2f} s (it reopens the store), the two after "
                + ", ".join(f"{1000 * s:.0f}" for s in reader["next_queries_s"])
                + " ms"
            )
        for ef, recall in r.get("recall", {}).items():
            print(
                f"  ef_search {ef}: dense recall@10 {recall['recall_at_10']:.4f} (ties counted "
                f"{recall['recall_at_10_with_ties']:.4f}), dense query p50 "
                f"{recall['dense_query_p50_ms']:.1f} ms"
            )
        if "write_costs" in r:
            costs = r["write_costs"]
            print(
                f"  Chroma's add of {costs['chunks']} chunks: "
                + ", ".join(
                    f"{given} {costs[given]:.0f} chunks/s "
                    f"(x{GPU_CHUNKS_PER_S / costs[given]:.2f} a GPU's embedding time)"
                    for given in ("everything", "no texts", "vectors and filters", "vectors only")
                )
            )
            one = r["write_costs_one_core"]["everything"]
            every = costs["everything"]
            print(
                f"  on one core, everything {one:.0f} chunks/s: on these "
                f"{len(os.sched_getaffinity(0))} cores Chroma's add runs x{every / one:.2f} as fast"
            )
        for graph, built in r["graphs"].items():
            first_graph = r["graphs"][graphs[0]]
            print(
                f"  graph {graph} (max_neighbors/ef_construction), vectors only: built in "
                f"{built['build_s']:.0f} s, {built['vectors_per_s']:.0f} vectors/s "
                f"(x{built['build_s'] / first_graph['build_s']:.2f} the time of {graphs[0]})"
            )
            for ef, recall in built["recall"].items():
                print(
                    f"    ef_search {ef}: recall@10 {recall['recall_at_10']:.4f} (ties counted "
                    f"{recall['recall_at_10_with_ties']:.4f}), query p50 "
                    f"{recall['dense_query_p50_ms']:.1f} ms"
                )
    if args.json:
        figures = {"stand_in_check": check, "sizes": results, "writers": writers}
        figures["real_model"] = model
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

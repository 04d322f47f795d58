import rag


def test_public_api_is_explicit() -> None:
    assert sorted(rag.__all__) == [
        "ChunkStore",
        "Embedder",
        "IngestReport",
        "Ingestor",
        "LoadError",
        "Retrieved",
        "Retriever",
        "Settings",
        "StoreError",
        "load",
        "load_settings",
    ]
    for name in rag.__all__:
        assert getattr(rag, name) is not None

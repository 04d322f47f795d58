import rag


def test_public_api_is_explicit() -> None:
    assert sorted(rag.__all__) == [
        "Answer",
        "Answerer",
        "ChunkStore",
        "Citation",
        "Embedder",
        "IngestReport",
        "Ingestor",
        "LLM",
        "LLMError",
        "LoadError",
        "Retrieved",
        "Retriever",
        "Settings",
        "StoreError",
        "Turn",
        "load",
        "load_settings",
        "make_llm",
    ]
    for name in rag.__all__:
        assert getattr(rag, name) is not None

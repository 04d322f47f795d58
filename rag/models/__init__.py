"""The models: the embedding model (in this process or its own) and the LLM backends.

The one interface to an LLM is ``rag.models.llm.LLM``; nothing else calls llama.cpp or a
server's client. The llama.cpp build itself is ``rag/llama_build.py``, run by ``make``.
"""

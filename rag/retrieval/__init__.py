"""Retrieval: the chunks for a question (dense and keyword search fused), for LangChain too."""

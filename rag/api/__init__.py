"""The OpenAI-compatible HTTP API, ``rag serve``."""

"""Ingest: a folder synced into the store (plan, read, chunk, embed, write), and --watch."""

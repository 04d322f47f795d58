"""Sync documents into the store: ``python ingest.py PATH...`` (same as ``rag ingest``)."""

import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))

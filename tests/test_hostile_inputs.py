"""Hostile files in a folder: each is reported or read within bounds, and the rest goes in.

The sizes here keep the suite quick; ``bench/bench_faults.py`` runs the full-size cases (a
1 GB zip bomb, a 50 MB line, a 10,000-page PDF, a million CSV columns) and reports the time
and memory each takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rag.settings import load_settings
from rag.storage.store import open_store
from tests.conftest import ROOT
from tests.hostile import (
    HOSTILE_NAMES,
    Measured,
    deep_html,
    hostile_names,
    injection_document,
    run_measured,
    wide_csv,
    zip_bomb_docx,
)

pytestmark = pytest.mark.slow


def stored_ids(data_dir: Path) -> set[str]:
    settings = load_settings(data_dir=data_dir)
    with open_store(settings, "any", check_embedder=False) as store:
        return store.ids()


def ingest(folder: Path, data_dir: Path) -> Measured:
    return run_measured(
        [sys.executable, str(ROOT / "ingest.py"), str(folder), "--data-dir", str(data_dir)]
    )


def test_hostile_files_are_reported_or_read_and_the_rest_is_ingested(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "normal.md").write_text("# Kestrel\n\nThe kestrel hovers over the field.\n")
    bomb = zip_bomb_docx(docs / "bomb.docx", megabytes=300)
    deep_html(docs / "deep.html")
    wide_csv(docs / "wide.csv", columns=5_000)
    hostile_names(docs)
    injection_document(docs / "injection.md")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Linked from outside the folder: the vault code is 7.\n")
    (docs / "linked.txt").symlink_to(outside / "secret.txt")

    result = ingest(docs, tmp_path / "data")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"failed: {bomb}: unpacks to 287 MB from 0.5 MB" in result.stderr
    assert "zip bomb" in result.stderr
    # "..\\..\\escape.txt" starts with a dot: a hidden file, never ingested
    assert "added 8, updated 0, removed 0, renamed 0, unchanged 0, skipped 0, failed 1" in (
        result.stdout
    )
    assert result.peak_mb < 1200, result.peak_mb  # the bomb was never unpacked

    listing = subprocess.run(
        [sys.executable, "-m", "rag.cli", "sources", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = listing.stdout.splitlines()
    assert len(lines) == 9  # eight documents and the total: no name broke a line
    assert any(line.endswith("line\\nbreak.txt") for line in lines)
    assert any(line.endswith("evil\\u202etxt.md") for line in lines)
    assert any(line.endswith("linked.txt") for line in lines)  # symlinks are followed
    assert len(HOSTILE_NAMES) == 4

    # The store equals a clean run over the files that could be read.
    bomb.unlink()
    clean = ingest(docs, tmp_path / "clean")
    assert clean.code == 0, clean.stderr
    assert stored_ids(tmp_path / "data") == stored_ids(tmp_path / "clean")

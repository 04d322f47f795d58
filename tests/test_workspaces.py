"""Workspaces: separate sets of documents in one store (real Chroma, embedded and server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.models.embeddings import Embedder
from rag.workspaces import WorkspaceError, Workspaces, checked_name
from tests.conftest import ROOT, SettingsFactory, run_rag

SAMPLE = ROOT / "data" / "sample"
CHARGE = "How long does a full charge of the battery take?"


def write_birds(folder: Path) -> Path:
    folder.mkdir()
    (folder / "kestrel.md").write_text(
        "# Kestrels\n\nThe kestrel hovers over the meadow, then drops onto voles.\n"
    )
    return folder


def test_workspace_names_are_checked() -> None:
    assert checked_name("team-a_2") == "team-a_2"
    for bad in ("", "Team", "../up", "a" * 41, "-lead", "two words"):
        with pytest.raises(WorkspaceError, match="not a workspace name"):
            checked_name(bad)


@pytest.mark.slow
def test_a_workspace_sees_only_its_documents_and_goes_without_a_trace(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    served = Workspaces(make_settings(), embedder=embedder)
    default = served.default
    assert default.ingestor.sync([SAMPLE]).ok
    in_default = default.store.count()
    birds = served.create("birds")
    assert birds.ingestor.sync([write_birds(tmp_path / "birds")]).ok
    uploads = birds.settings.uploads_dir
    uploads.mkdir(parents=True)
    (uploads / "note.txt").write_text("an upload of the birds workspace")
    assert served.names() == ["default", "birds"]
    birds.conversations.start("Where do kestrels hunt?")
    default.conversations.start(CHARGE)
    with pytest.raises(WorkspaceError, match="exists already"):
        served.create("birds")

    found = birds.retriever.retrieve(CHARGE)
    assert all(chunk.metadata["source"] == "kestrel.md" for chunk in found)
    assert "kestrel.md" not in {c.metadata["source"] for c in default.retriever.retrieve("kestrel")}
    assert set(birds.store.sources()) == {"kestrel.md"}

    raptors = served.rename("birds", "raptors")
    assert served.names() == ["default", "raptors"]
    assert set(raptors.store.sources()) == {"kestrel.md"}
    assert (raptors.settings.uploads_dir / "note.txt").exists()
    assert [c.title for c in raptors.conversations.recent()] == ["Where do kestrels hunt?"]
    with pytest.raises(WorkspaceError, match="no workspace is named 'birds'"):
        served.get("birds")

    served.remove("raptors")
    assert served.names() == ["default"]
    assert not raptors.settings.workspace_dir.exists()
    assert default.store.count() == in_default  # nothing else removed
    assert served.create("raptors").conversations.recent() == []  # its chats went with it
    assert [c.title for c in default.conversations.recent()] == [CHARGE]
    with pytest.raises(WorkspaceError, match="cannot be removed"):
        served.remove("default")
    served.close()


@pytest.mark.slow
def test_the_cli_keeps_workspaces_apart(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert run_rag("ingest", str(SAMPLE), *data).returncode == 0
    birds = write_birds(tmp_path / "birds")
    refused = run_rag("ingest", str(birds), "--workspace", "birds", *data)
    assert refused.returncode == 2
    assert "no workspace is named 'birds'; the workspaces are: default" in refused.stderr
    added = run_rag("ingest", str(birds), "--workspace", "birds", "--create", *data)
    assert added.returncode == 0, added.stderr
    typo = run_rag("ask", "--workspace", "brids", CHARGE, *data)
    assert typo.returncode == 2
    assert "no workspace is named 'brids'; the workspaces are: default, birds" in typo.stderr
    listed = run_rag("workspaces", *data)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[-1] for line in listed.stdout.splitlines()] == ["default", "birds"]
    asked = run_rag("ask", "--json", "--workspace", "birds", CHARGE, *data)
    assert asked.returncode == 0, asked.stderr
    assert '"refused": true' in asked.stdout
    assert "user-guide.md" not in asked.stdout
    sources = run_rag("sources", "--workspace", "birds", *data).stdout
    assert "kestrel.md" in sources
    assert "user-guide.md" not in sources
    removed = run_rag("workspaces", "--remove", "birds", *data)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == [removed.stdout.split()[0], "default"]
    bad = run_rag("sources", "--workspace", "Not OK", *data)
    assert bad.returncode == 2
    assert "workspace" in bad.stderr

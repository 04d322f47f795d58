from pathlib import Path

import pytest

from rag.errors import SettingsError
from rag.settings import load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.store.mode == "embedded"
    assert settings.store.collection == "documents"
    assert settings.chroma_path == Path("data/chroma")


def test_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rag.toml").write_text(
        'data_dir = "from-file"\n[store]\ncollection = "file-collection"\nport = 9001\n'
    )
    settings = load_settings()
    assert settings.data_dir == Path("from-file")
    assert settings.store.port == 9001

    monkeypatch.setenv("RAG_DATA_DIR", "from-env")
    monkeypatch.setenv("RAG_STORE__COLLECTION", "env-collection")
    settings = load_settings()
    assert settings.data_dir == Path("from-env")
    assert settings.store.collection == "env-collection"
    assert settings.store.port == 9001  # still from the file

    assert load_settings(data_dir=Path("from-flag")).data_dir == Path("from-flag")


def test_named_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = tmp_path / "custom.toml"
    named.write_text("[chunking]\noverlap_tokens = 7\n")
    assert load_settings(named).chunking.overlap_tokens == 7
    monkeypatch.setenv("RAG_SETTINGS_FILE", str(named))
    assert load_settings().chunking.overlap_tokens == 7
    with pytest.raises(SettingsError, match=r"missing\.toml"):
        load_settings(tmp_path / "missing.toml")


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_STORE__MODE", "cloud")
    with pytest.raises(SettingsError, match="mode"):
        load_settings()

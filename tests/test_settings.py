import re
from pathlib import Path

import pytest

from rag.errors import SettingsError
from rag.settings import load_settings


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    # No settings file here: the user's data folder, the same wherever a command runs.
    assert settings.data_dir == tmp_path / "user-data" / "rag"
    assert settings.store.mode == "embedded"
    assert settings.store.collection == "documents"
    assert settings.chroma_path == tmp_path / "user-data" / "rag" / "chroma"


def test_the_store_is_beside_the_settings_file_wherever_a_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "rag.toml").write_text("[retrieval]\nk = 5\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    named = load_settings(project / "rag.toml")
    assert named.data_dir == project / "data"
    monkeypatch.setenv("RAG_SETTINGS_FILE", str(project / "rag.toml"))
    assert load_settings().data_dir == project / "data"
    (project / "rag.toml").write_text('data_dir = "store"\n')
    assert load_settings().data_dir == project / "store"  # relative to the file
    monkeypatch.delenv("RAG_SETTINGS_FILE")
    assert load_settings().data_dir == tmp_path / "user-data" / "rag"


def test_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rag.toml").write_text(
        'data_dir = "from-file"\n[store]\ncollection = "file-collection"\n'
        "[store.server]\nport = 9001\n"
    )
    settings = load_settings()
    assert settings.data_dir == tmp_path / "from-file"  # beside the file
    assert settings.store.server.port == 9001

    monkeypatch.setenv("RAG_DATA_DIR", "from-env")
    monkeypatch.setenv("RAG_STORE__COLLECTION", "env-collection")
    settings = load_settings()
    assert settings.data_dir == Path("from-env")
    assert settings.store.collection == "env-collection"
    assert settings.store.server.port == 9001  # still from the file

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


def test_each_backend_has_its_block_and_a_moved_setting_says_where_it_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_LLM__LLAMA_CPP__N_GPU_LAYERS", "7")
    monkeypatch.setenv("RAG_STORE__SERVER__PORT", "9002")
    settings = load_settings(llm={"server": {"base_url": "http://gpu-box:8080/v1"}})
    assert settings.llm.llama_cpp.n_gpu_layers == 7
    assert settings.llm.server.base_url == "http://gpu-box:8080/v1"
    assert settings.store.server.port == 9002
    for old, new in (
        ({"llm": {"model_path": "m.gguf"}}, "llm.model_path is now llm.llama_cpp.model_path"),
        ({"llm": {"server_model": "m"}}, "llm.server_model is now llm.server.model"),
        ({"store": {"port": 8000}}, "store.port is now store.server.port"),
    ):
        with pytest.raises(SettingsError, match=re.escape(new)):
            load_settings(**old)
    (tmp_path / "typo.toml").write_text("[llm.llama_cpp]\nn_gpu_layer = 3\n")
    with pytest.raises(SettingsError, match=r"n_gpu_layer\b"):  # never silently ignored
        load_settings(tmp_path / "typo.toml")

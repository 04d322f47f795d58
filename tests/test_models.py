"""Models people choose: GGUF headers read without loading, `rag models`, `--model`."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rag.answering.rules import BASE, INSTRUCTION_TUNED, rules_for
from rag.models.catalog import resolve_model
from rag.models.choice import ModelChoice
from rag.models.gguf import GGUFError, read_facts
from rag.models.llama_cpp_llm import LlamaCppLLM
from rag.models.llm import LLMError, bundled_gguf_path
from rag.settings import AnswerSettings, LLMSettings, QuotePolicy
from tests.conftest import ROOT, run_rag


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, name: str, template: bool) -> Path:
    """A small GGUF header as the format specifies it: metadata, a vocabulary, one tensor."""
    entries = [
        _string("general.architecture") + struct.pack("<I", 8) + _string("llama"),
        _string("general.name") + struct.pack("<I", 8) + _string(name),
        _string("general.file_type") + struct.pack("<II", 4, 15),
        _string("llama.context_length") + struct.pack("<II", 4, 2048),
        _string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + b"".join(_string(t) for t in ("a", "b", "c")),
        _string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + bytes(12),
    ]
    if template:
        entries.append(_string("tokenizer.chat_template") + struct.pack("<I", 8) + _string("{{x}}"))
    tensor = _string("token_embd.weight") + struct.pack("<I2QIQ", 2, 4, 8, 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(entries))
    path.write_bytes(header + b"".join(entries) + tensor + bytes(64))
    return path


def test_the_bundled_models_facts_come_from_its_header() -> None:
    facts = read_facts(bundled_gguf_path())
    assert (facts.name, facts.architecture, facts.quantization) == (
        "Gemma 3 270m",
        "gemma3",
        "Q4_K_M",
    )
    assert facts.context_length == 32768
    assert facts.parameters_label == "268M"
    assert not facts.chat_template
    assert not facts.instruction_tuned


def test_a_header_with_a_template_and_arrays_is_read(tmp_path: Path) -> None:
    facts = read_facts(write_gguf(tmp_path / "tiny.gguf", "Tiny 1B Instruct", template=True))
    assert (facts.name, facts.context_length, facts.quantization) == (
        "Tiny 1B Instruct",
        2048,
        "Q4_K_M",
    )
    assert facts.parameters == 32
    assert facts.chat_template
    assert facts.instruction_tuned
    base = read_facts(write_gguf(tmp_path / "base.gguf", "Tiny 1B", template=True))
    assert not base.instruction_tuned  # a template alone does not make a chat model


def test_what_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(GGUFError, match=r"text\.gguf is not a GGUF model file"):
        read_facts(tmp_path / "text.gguf")
    whole = write_gguf(tmp_path / "whole.gguf", "Tiny", template=False).read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:60])
    with pytest.raises(GGUFError, match=r"cut\.gguf: the file ends inside its header"):
        read_facts(tmp_path / "cut.gguf")


@pytest.mark.slow
def test_rag_models_finds_ggufs_in_a_folder_and_ask_takes_one_by_name(tmp_path: Path) -> None:
    models = tmp_path / "models" / "gemma"
    models.mkdir(parents=True)
    (models / "my-gemma.gguf").symlink_to(bundled_gguf_path())
    (tmp_path / "models" / "broken.gguf").write_text("junk")
    data = ["--data-dir", str(tmp_path / "data")]
    settings = tmp_path / "rag.toml"
    settings.write_text(f'[llm]\nmodel_dirs = ["{tmp_path / "models"}"]\n')
    listed = run_rag("models", "--settings", str(settings), *data)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    mine = next(line for line in lines if line.endswith("my-gemma.gguf"))
    assert "Gemma 3 270m" in mine
    assert "Q4_K_M" in mine
    assert "ctx  32k" in mine
    assert any("broken.gguf: " in line and "not a GGUF model file" in line for line in lines)

    assert run_rag("ingest", str(ROOT / "data" / "sample"), *data).returncode == 0
    question = "How long does a full charge of the battery take?"
    asked = run_rag("ask", "--settings", str(settings), "--model", "my-gemma", question, *data)
    assert asked.returncode == 0, asked.stderr
    assert "4.5 hours" in asked.stdout
    missing = run_rag("ask", "--settings", str(settings), "--model", "nosuch", question, *data)
    assert missing.returncode == 2
    assert "no GGUF file has the name or path 'nosuch'" in missing.stderr
    assert "my-gemma.gguf" in missing.stderr


@pytest.mark.slow
def test_choosing_another_model_frees_the_last(tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.symlink_to(bundled_gguf_path())
    settings = LLMSettings(model_dirs=[tmp_path])
    first = LlamaCppLLM(settings)
    first.load()
    choice = ModelChoice(first, settings)
    assert choice.model(settings) is first
    second = choice.model(resolve_model(settings, str(other)))
    assert second.name == "other.gguf"
    with pytest.raises(LLMError, match="another one was chosen"):  # freed, never reloaded
        first.load()
    assert choice.model(resolve_model(settings, "other")) is second
    # The bundled model named by its path is the one already loaded, not a second one.
    bundled = resolve_model(settings, str(bundled_gguf_path()))
    first_again = choice.model(bundled)
    assert choice.model(LLMSettings(model_dirs=[tmp_path])) is first_again


def test_the_answer_rules_follow_the_kind_of_model(tmp_path: Path) -> None:
    answer = AnswerSettings()
    bundled = LlamaCppLLM(LLMSettings())
    assert not bundled.instruction_tuned  # Gemma 3 270M, a base model
    assert rules_for(answer, LLMSettings(), bundled.instruction_tuned) == BASE
    renamed = tmp_path / "tiny-Instruct-Q4_K_M.gguf"
    renamed.symlink_to(bundled_gguf_path())
    instruct = LlamaCppLLM(LLMSettings(llama_cpp={"model_path": renamed}))
    assert instruct.instruction_tuned
    assert rules_for(answer, LLMSettings(), instruct.instruction_tuned) == INSTRUCTION_TUNED
    told = LLMSettings(instruction_tuned=False, llama_cpp={"model_path": renamed})
    assert not LlamaCppLLM(told).instruction_tuned
    mine = AnswerSettings(quote=QuotePolicy.UNSUPPORTED)  # what the settings set is kept
    kept = rules_for(mine, LLMSettings(llama_cpp={"copy_bias": 2.0}), True)
    assert (kept.quote, kept.excerpt_windows, kept.copy_bias) == (QuotePolicy.UNSUPPORTED, 0, 2.0)

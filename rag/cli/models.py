"""``rag models``: the models this machine has (GGUF files) or the LLM server lists."""

from __future__ import annotations

from rag.cli.output import EXIT_OK, tell
from rag.documents.scanning import printable
from rag.models.catalog import find_models, server_models, usual_folders
from rag.settings import Settings


def list_models(settings: Settings) -> int:
    """Print each model with its size, parameters, quantization, trained context and template.

    Raises:
        LLMError: the configured LLM server cannot be reached (for ``llm.backend = "openai"``).
    """
    llm = settings.llm
    if llm.backend == "openai":
        for name in server_models(llm):
            print(name)
        tell(f"models of the LLM server at {llm.server.base_url}")
        return EXIT_OK
    listed = find_models(llm)
    for found in listed:
        facts = found.facts
        if facts is None:
            print(f"  (unreadable)  {printable(str(found.path))}: {found.problem}")
            continue
        mark = "*" if found is listed[0] else " "  # the configured model, else the bundled one
        context = f"{facts.context_length // 1024}k" if facts.context_length else "?"
        kind = "instruct" if facts.instruction_tuned else "base"
        print(
            f"{mark} {printable(facts.name):40} {facts.parameters_label:>6} "
            f"{facts.quantization or '?':>7} ctx {context:>4} {kind:>8} "
            f"{'chat template' if facts.chat_template else '':13} "
            f"{facts.size_bytes / 2**30:5.2f} GiB  {printable(str(found.path))}"
        )
    folders = ", ".join(str(folder) for folder in usual_folders(llm))
    tell(f"* the model in use; searched {folders}; choose one with --model NAME|PATH")
    return EXIT_OK

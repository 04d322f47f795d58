"""``rag doctor``: what this machine actually does, and whether anything is broken.

"The GPU is not used" is the most common complaint about local LLM tools, and the answer is
usually in the build, not the settings. So this reports the versions in use, how llama.cpp was
built (CPU features, GPU backend, layers offloaded) and whether that is the build this machine
should run, the embedding model's device and precision, a short timed workload beside the
range expected for this kind of machine, the store with a consistency check, and the settings
in effect. A check that fails makes the exit status 1; a warning does not.

Limits: the expected ranges are for the bundled models (Gemma 3 270M Q4_K_M and
all-MiniLM-L6-v2) on a CPU or one NVIDIA GPU; another model is timed but not judged. GPU
detection is NVIDIA's (``nvidia-smi``) and torch's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.doctor.machine import (
    check_embedding,
    check_llm,
    check_versions,
    check_workload,
    gpu_present,
    time_embedder,
    time_llm,
)
from rag.doctor.report import SECTIONS, Check, Report, Status
from rag.doctor.store_checks import check_store, store_consistency
from rag.models.embeddings import Embedder
from rag.models.llm import LLM, LLMError
from rag.settings import Settings
from rag.storage.store import ChunkStore

__all__ = [
    "SECTIONS",
    "Check",
    "Report",
    "Status",
    "diagnose",
    "gpu_present",
    "store_consistency",
    "time_embedder",
    "time_llm",
]


def diagnose(
    settings: Settings,
    settings_file: Path | None,
    *,
    embedder: Embedder | None = None,
    store: ChunkStore | None = None,
    llm: LLM | None = None,
    workload: bool = True,
    repair: bool = False,
) -> Report:
    """Check the installation, the models, the store and the settings.

    Components already built (the app's) are used as they are; missing ones are built here
    and a failure to build one is reported, never raised. ``repair`` rebuilds the keyword
    index from the Chroma collection before the store is checked.
    """
    report = Report()
    check_versions(report)
    if llm is None:
        llm = _build(report, "llama.cpp", "model", lambda: _make_llm(settings))
    if llm is not None:
        check_llm(report, llm)
    if embedder is None:
        embedder = _build(report, "embedding", "model", lambda: Embedder(settings.embedding))
    if embedder is not None:
        check_embedding(report, embedder)
    if workload:
        check_workload(report, llm, embedder, settings)
    if embedder is not None:
        check_store(report, settings, embedder, store, repair)
    _settings(report, settings, settings_file)
    return report


def _build(report: Report, section: str, name: str, make: Any) -> Any:
    try:
        return make()
    except (FileNotFoundError, ValueError, LLMError, OSError) as error:
        report.add(section, name, str(error), "fail")
        return None


def _make_llm(settings: Settings) -> LLM:
    from rag.models.llm import make_llm

    return make_llm(settings.llm)


def _settings(report: Report, settings: Settings, settings_file: Path | None) -> None:
    from rag.settings import DEFAULT_SETTINGS_FILE

    named = settings_file or os.environ.get("RAG_SETTINGS_FILE")
    path = Path(named) if named else DEFAULT_SETTINGS_FILE
    if path.is_file():
        report.add("settings", "file", str(path.resolve()))
    else:
        report.add("settings", "file", "none (defaults and environment)")
    overrides = sorted(name for name in os.environ if name.startswith("RAG_"))
    report.add("settings", "environment", ", ".join(overrides) or "no RAG_ variables")
    changed = settings.model_dump(mode="json", exclude_defaults=True)
    for name, value in _flat(changed):
        report.add("settings", name, _shown(name, value))


def _flat(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, object]]:
    """Nested settings as dotted names: ``llm.server.base_url``."""
    for name, value in sorted(values.items()):
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _shown(name: str, value: object) -> str:
    last = name.rsplit(".", 1)[-1]
    return "(set)" if "key" in last or "token" in last else str(value)

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
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from rag import llama_build
from rag.models.embeddings import Embedder
from rag.models.llama_cpp_llm import LlamaCppLLM, llama_offload_supported, llama_system_info
from rag.models.llm import LLM, LLMError, usable_cores
from rag.models.server_llm import OpenAICompatibleLLM
from rag.settings import Settings
from rag.storage.records import FileRecord
from rag.storage.store import ChunkStore, StoreError, open_store

Status = Literal["ok", "info", "warn", "fail"]
SECTIONS = ("versions", "llama.cpp", "embedding", "workload", "store", "settings")
RECORD_FIELDS = ("root", "source", "file_hash", "pipeline", "chunk_index", "chunk_count")

# Expected figures for the bundled models on this workload, as (low, high): about a third to
# three times what machines of the kind measured. On a CPU, per core for prompt evaluation
# and per square root of the cores for generation and embedding, which are bound by memory
# more than by cores. Measured with `rag doctor`: 544 prompt / 72 generated tokens/s and 222
# to 368 chunks/s on a 2-core x86-64 VM (AVX2; the chunks are about 50 word pieces), 12,000 /
# 125 tokens/s on a 16-core host. On a GPU: measured on an H100 (prompt 27,000, generation
# 400 tokens/s, 2,000 chunks/s).
EXPECTED_CPU = {
    "prompt": (100.0, 1200.0, 1.0),  # low, high, exponent of the core count
    "generation": (10.0, 80.0, 0.5),
    "embed": (50.0, 600.0, 0.5),
}
EXPECTED_GPU = {
    "prompt": (4000.0, 80000.0),
    "generation": (150.0, 1500.0),
    "embed": (800.0, 4000.0),
}
WORKLOAD_TEXT = (
    "The battery of the field recorder lasts about twelve hours and charges in four and a "
    "half hours from the supplied adapter. Keep the recorder dry, away from dust, and store "
    "it at room temperature when it is not in use for a long time. "
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    section: str
    name: str
    value: str
    status: Status = "info"


@dataclass
class Report:
    """Every check, in section order; ``ok`` unless one failed."""

    checks: list[Check] = field(default_factory=list)

    def add(self, section: str, name: str, value: str, status: Status = "info") -> None:
        """Append a check."""
        self.checks.append(Check(section, name, value, status))

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(check.status != "fail" for check in self.checks)

    def problems(self) -> list[Check]:
        """The failed checks and the warnings, failures first."""
        order = {"fail": 0, "warn": 1}
        bad = [c for c in self.checks if c.status in order]
        return sorted(bad, key=lambda c: order[c.status])

    def text(self) -> str:
        """The report for a terminal: a block per section, a verdict at the end."""
        marks = {"ok": "ok  ", "info": "    ", "warn": "WARN", "fail": "FAIL"}
        lines: list[str] = []
        for section in SECTIONS:
            checks = [c for c in self.checks if c.section == section]
            if not checks:
                continue
            lines.append(f"{section}")
            lines += [f"  {marks[c.status]} {c.name}: {c.value}" for c in checks]
        failed = sum(c.status == "fail" for c in self.checks)
        warned = sum(c.status == "warn" for c in self.checks)
        verdict = "broken" if failed else "working"
        lines.append(f"{verdict}: {failed} failed, {warned} warnings")
        return "\n".join(lines)

    def summary(self) -> list[str]:
        """A few lines for the app's sidebar: the verdict, the build, the devices, problems."""
        failed = sum(c.status == "fail" for c in self.checks)
        warned = sum(c.status == "warn" for c in self.checks)
        lines = [f"{'broken' if failed else 'working'}: {failed} failed, {warned} warnings"]
        wanted = {("llama.cpp", "offload"), ("embedding", "device"), ("embedding", "precision")}
        lines += [f"{c.name}: {c.value}" for c in self.checks if (c.section, c.name) in wanted]
        lines += [f"{c.status.upper()} {c.name}: {c.value}" for c in self.problems()]
        return lines

    def to_json(self) -> dict[str, Any]:
        """The report as data."""
        return {
            "ok": self.ok,
            "checks": [
                {"section": c.section, "name": c.name, "value": c.value, "status": c.status}
                for c in self.checks
            ],
        }


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
    _versions(report)
    if llm is None:
        llm = _build(report, "llama.cpp", "model", lambda: _make_llm(settings))
    if llm is not None:
        _llm(report, llm)
    if embedder is None:
        embedder = _build(report, "embedding", "model", lambda: Embedder(settings.embedding))
    if embedder is not None:
        _embedding(report, embedder)
    if workload:
        _workload(report, llm, embedder, settings)
    if embedder is not None:
        _store(report, settings, embedder, store, repair)
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


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions(report: Report) -> None:
    report.add("versions", "rag", _version("rag"))
    report.add("versions", "python", f"{platform.python_version()} ({sys.executable})")
    machine = f"{platform.system()} {platform.machine()}, {usable_cores()} cores"
    report.add("versions", "machine", machine)
    for distribution in (
        "llama-cpp-python",
        "chromadb",
        "sentence-transformers",
        "torch",
        "streamlit",
    ):
        report.add("versions", distribution, _version(distribution))


def gpu_present() -> bool:
    """True when an NVIDIA GPU answers ``nvidia-smi``, or torch sees a CUDA device."""
    if llama_build.probe_gpu().compute_caps:
        return True
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _llm(report: Report, llm: LLM) -> None:
    if isinstance(llm, OpenAICompatibleLLM):
        report.add("llama.cpp", "backend", f"OpenAI-compatible server at {llm.base_url}")
        try:
            report.add("llama.cpp", "server model", llm.name, "ok")
        except LLMError as error:
            report.add("llama.cpp", "server", str(error), "fail")
        return
    if not isinstance(llm, LlamaCppLLM):
        report.add("llama.cpp", "backend", type(llm).__name__)
        return
    info = llama_system_info()
    report.add("llama.cpp", "system info", info)
    if "AMX_INT8 = 1" in info:
        report.add(
            "llama.cpp",
            "AMX",
            "this llama.cpp uses AMX, whose matrix code crashed: run make to rebuild it",
            "fail",
        )
    _build_record(report)
    offload = llama_offload_supported()
    try:
        gguf = llm.model.metadata
        layers = int(gguf.get(f"{gguf.get('general.architecture')}.block_count", 0))
    except Exception as error:  # llama.cpp raises ValueError, or worse, on a bad file
        report.add("llama.cpp", "model", f"{llm.model_path}: cannot load: {error}", "fail")
        return
    report.add("llama.cpp", "model", f"{llm.model_path} ({layers} layers)")
    report.add("llama.cpp", "threads", str(llm.n_threads))
    on_gpu = layers if llm.n_gpu_layers < 0 else min(llm.n_gpu_layers, layers)
    where = f"{on_gpu} of {layers} layers on the GPU"
    if offload and on_gpu:
        report.add("llama.cpp", "offload", where, "ok")
    elif gpu_present() and not offload:
        report.add(
            "llama.cpp",
            "offload",
            f"{where}: a GPU is present but this llama.cpp has no GPU support; with the CUDA "
            "toolkit (nvcc) installed, run make again and it builds for the GPU",
            "warn",
        )
    elif offload:
        report.add("llama.cpp", "offload", f"{where}: llm.llama_cpp.n_gpu_layers is 0", "warn")
    else:
        report.add("llama.cpp", "offload", f"{where} (CPU build, no GPU found)")


def _build_record(report: Report) -> None:
    """Whether the installed llama.cpp is the build the project makes for this machine."""
    try:
        plan = llama_build.plan_build(llama_build.probe_gpu(), platform.machine(), os.environ)
    except ValueError as error:
        report.add("llama.cpp", "build", str(error), "fail")
        return
    record = llama_build.read_record(Path(sys.prefix))
    if record is None:
        report.add(
            "llama.cpp",
            "build",
            "llama-cpp-python was not installed by the project's build (no "
            f"{llama_build.record_path(Path(sys.prefix))}): run make",
            "warn",
        )
        return
    flags = " ".join(str(arg) for arg in record.get("cmake_args", []))  # type: ignore[attr-defined]
    described = f"{record.get('backend')} build {record.get('key')} ({flags})"
    if record.get("key") == plan.key:
        report.add("llama.cpp", "build", described, "ok")
    else:
        report.add(
            "llama.cpp",
            "build",
            f"{described}, but this machine should run {plan.backend} build {plan.key} "
            f"({plan.reason}): run make",
            "fail",
        )


def _embedding(report: Report, embedder: Embedder) -> None:
    report.add("embedding", "model", f"{embedder.model_path} ({embedder.name})")
    try:
        device = embedder.device
    except Exception as error:  # torch and transformers raise many kinds
        report.add("embedding", "model", f"cannot load: {error}", "fail")
        return
    idle_gpu = device == "cpu" and _torch_gpu()
    report.add("embedding", "device", device, "warn" if idle_gpu else "ok")
    report.add("embedding", "precision", embedder.precision)
    report.add("embedding", "batch size", str(embedder.batch_size))


def _torch_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _judge(name: str, figure: float, gpu: bool, bundled: bool) -> tuple[str, Status]:
    """The figure beside its expected range; 'warn' below it."""
    if not bundled:
        return f"{figure:,.0f} (another model: no expected range)", "info"
    if gpu:
        low, high = EXPECTED_GPU[name]
        kind = "one NVIDIA GPU"
    else:
        cores = usable_cores()
        low, high, exponent = EXPECTED_CPU[name]
        low, high = low * cores**exponent, high * cores**exponent
        kind = f"a {cores}-core CPU"
    expected = f"expected on {kind}: {low:,.0f}-{high:,.0f}"
    status: Status = "ok" if figure >= low else "warn"
    return f"{figure:,.0f} ({expected})", status


def _workload(
    report: Report, llm: LLM | None, embedder: Embedder | None, settings: Settings
) -> None:
    if isinstance(llm, LlamaCppLLM) and llm.model is not None:
        try:
            prompt_rate, generation_rate = time_llm(llm)
        except Exception as error:  # a broken build fails in many ways
            report.add("workload", "llm", f"failed: {error}", "fail")
        else:
            gpu = llm.n_gpu_layers != 0 and llama_offload_supported()
            bundled = settings.llm.llama_cpp.model_path is None
            value, status = _judge("prompt", prompt_rate, gpu, bundled)
            report.add("workload", "prompt tokens/s", value, status)
            value, status = _judge("generation", generation_rate, gpu, bundled)
            report.add("workload", "generated tokens/s", value, status)
    if embedder is not None:
        try:
            rate = time_embedder(embedder)
        except Exception as error:
            report.add("workload", "embedding", f"failed: {error}", "fail")
        else:
            bundled = settings.embedding.model_path is None
            value, status = _judge("embed", rate, embedder.device != "cpu", bundled)
            report.add("workload", "chunks embedded/s", value, status)


def time_llm(
    llm: LlamaCppLLM, prompt_tokens: int = 256, generated: int = 32
) -> tuple[float, float]:
    """Prompt-evaluation and generation tokens/s on a fixed prompt, greedy, cache emptied."""
    model = llm.model
    text = WORKLOAD_TEXT * (prompt_tokens // 40 + 1)
    tokens = model.tokenize(text.encode(), add_bos=True)[:prompt_tokens]
    with llm._lock:  # one request at a time on this context
        model.reset()  # nothing reused from an earlier prompt
        started = time.perf_counter()
        stream = model.generate(tokens, temp=0.0, reset=True)
        next(stream)  # the prompt evaluated, the first token sampled
        first = time.perf_counter()
        for _ in range(generated):
            next(stream)
        done = time.perf_counter()
        stream.close()
        model.reset()
    return len(tokens) / (first - started), generated / (done - first)


def time_embedder(embedder: Embedder, chunks: int = 64) -> float:
    """Chunks embedded per second, one warm-up batch first (about 50 word pieces each)."""
    texts = [f"{i}. {WORKLOAD_TEXT}" for i in range(chunks)]
    embedder.embed(texts[: embedder.batch_size])
    started = time.perf_counter()
    embedder.embed(texts)
    return chunks / (time.perf_counter() - started)


def _store(
    report: Report,
    settings: Settings,
    embedder: Embedder,
    store: ChunkStore | None,
    repair: bool = False,
) -> None:
    report.add("store", "mode", settings.store.mode)
    own = store is None
    try:
        if store is None:
            store = open_store(settings, embedder.name, check_embedder=False)
    except StoreError as error:
        report.add("store", "location", str(error), "fail")
        return
    try:
        report.add(
            "store", "location", f"{store.location}, collection {settings.collection_name!r}"
        )
        built_with = store.built_with()
        if built_with != embedder.name:
            report.add(
                "store",
                "embedding model",
                f"built with {built_with!r}, not the configured {embedder.name!r}: "
                "re-run the ingest with --reset",
                "fail",
            )
        if repair:
            rebuilt = store.rebuild_index()
            report.add("store", "keyword index rebuilt", f"{rebuilt} chunks from Chroma", "ok")
        for check in store_consistency(store):
            report.checks.append(check)
    finally:
        if own:
            store.close()


def store_consistency(store: ChunkStore) -> list[Check]:
    """Documents, chunks, and what an interrupted or foreign write could leave wrong."""
    count = store.count()
    ids: Counter[str] = Counter()
    orphans: list[str] = []
    files: dict[tuple[str, str], FileRecord] = {}
    for chunk_id, meta in store.metadatas():
        ids[chunk_id] += 1
        if any(name not in (meta or {}) for name in RECORD_FIELDS):
            orphans.append(chunk_id)
            continue
        key = (str(meta["root"]), str(meta["source"]))
        files.setdefault(key, FileRecord(*key)).add(chunk_id, meta)
    checks = [
        Check("store", "documents", str(len(files))),
        Check("store", "chunks", str(count)),
    ]
    duplicates = [chunk_id for chunk_id, seen in ids.items() if seen > 1]
    incomplete = [record.source for record in files.values() if not record.complete]
    problems = {
        "chunks without a file record": orphans,
        "duplicate ids": duplicates,
        "files stored incompletely": incomplete,
    }
    for name, found in problems.items():
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        if found:
            value = f"{len(found)}: {shown}; re-run the ingest with --reset"
            checks.append(Check("store", name, value, "fail"))
        else:
            checks.append(Check("store", name, "none", "ok"))
    if sum(ids.values()) != count:
        checks.append(Check("store", "chunks read", f"{sum(ids.values())} of {count}", "fail"))
    checks.append(_keyword_index(store, count))
    return checks


def _keyword_index(store: ChunkStore, count: int) -> Check:
    """Whether the keyword index holds what the store holds (a warning: opening mends it)."""
    indexed, unsettled = store.index_state()
    if indexed == count and not unsettled:
        return Check("store", "keyword index", f"in step: {indexed} chunks", "ok")
    value = (
        f"{indexed} chunks of {count}, {unsettled} unsettled by a stopped write; the next "
        "search settles a stopped write, the next opening of the store compares every chunk, "
        "`rag doctor --repair` rebuilds it"
    )
    return Check("store", "keyword index", value, "warn")


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

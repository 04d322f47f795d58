"""The machine: versions, the llama.cpp build and offload, the embedding device, a workload.

The timed workload is judged beside the range expected for this kind of machine.

Limits: the expected ranges are for the bundled models on a CPU or one NVIDIA GPU; another
model is timed but not judged. GPU detection is NVIDIA's (``nvidia-smi``) and torch's.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from rag import llama_build
from rag.doctor.report import Report, Status
from rag.models.embeddings import Embedder
from rag.models.gguf import GGUFError
from rag.models.llama_cpp_llm import LlamaCppLLM, llama_offload_supported, llama_system_info
from rag.models.llm import LLM, LLMError, available_memory, usable_cores
from rag.models.server_llm import OpenAICompatibleLLM
from rag.settings import Settings

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


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_versions(report: Report) -> None:
    """Versions of the project, Python and the main libraries."""
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


def check_llm(report: Report, llm: LLM) -> None:
    """How llama.cpp was built, whether it is the build for this machine, what it offloads."""
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
    if not _fits(report, llm, offload):
        return  # loading it here would fail, or push the machine into swap
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


def _fits(report: Report, llm: LlamaCppLLM, offload: bool) -> bool:
    """Whether the model and its context fit the memory available (the GPU's when it runs there)."""
    try:
        need = llm.facts.memory_for(llm.context_size)
    except GGUFError as error:
        report.add("llama.cpp", "model", str(error), "fail")
        return False
    on_gpu = offload and llm.n_gpu_layers != 0
    free = _free_vram() if on_gpu else available_memory()
    where = "GPU memory" if on_gpu else "memory"
    if free is None:
        report.add("llama.cpp", "memory", f"needs {need / 2**30:.1f} GiB; {where} free unknown")
        return True
    said = (
        f"the model with its context of {llm.context_size} tokens needs {need / 2**30:.1f} GiB; "
        f"{free / 2**30:.1f} GiB of {where} are free"
    )
    if need > free:
        report.add(
            "llama.cpp",
            "memory",
            f"{said}: it will not fit; choose a smaller model or set a smaller llm.n_ctx",
            "warn",
        )
        return False
    report.add("llama.cpp", "memory", said, "ok")
    return True


def _free_vram() -> int | None:
    """Bytes free on the first GPU, as ``nvidia-smi`` tells it, else None."""
    free = llama_build.query_gpus("memory.free")
    return int(free[0]) * 2**20 if free and free[0].isdigit() else None


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


def check_embedding(report: Report, embedder: Embedder) -> None:
    """The embedding model's device, precision and batch size."""
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


def check_workload(
    report: Report, llm: LLM | None, embedder: Embedder | None, settings: Settings
) -> None:
    """A short timed workload, each figure beside the range expected here."""
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

"""Build llama-cpp-python from source with explicit flags, into a wheelhouse keyed by them.

Why: pip caches wheels by package version, not by ``CMAKE_ARGS`` or the CPU that built them,
so whichever wheel happens to be cached decides which llama.cpp runs. A native build on an
AMX-capable Xeon crashed in llama.cpp's AMX matrix code. Here every build names its flags,
its wheel lives under a folder named by a hash of them (``.llama-wheels/``), pip's cache is
never read or written, and the virtual environment records which build it installed
(``.venv/llama-build.json``), so a test and ``rag doctor`` can check it.

What it builds:
- An NVIDIA GPU with the CUDA toolkit (``nvcc``): CUDA for that GPU's architecture. A GPU
  without the toolkit, or no GPU: the CPU build, and it says which and why.
- On x86-64, never ``-march=native``: the CPU code targets x86-64-v3 (AVX2, FMA, F16C, BMI2),
  which every x86-64 CPU since 2015 runs, and leaves out AMX, whose code path crashed.
- ``RAG_LLAMA_BACKEND=cpu|cuda`` overrides the choice; ``RAG_LLAMA_CUDA_ARCHS`` (e.g. ``90``)
  names the GPU architectures where no GPU is visible at build time.

It runs on the standard library alone: ``make`` runs it before anything else is installed.
Limits: the portable CPU flags are for x86-64; on other CPUs llama.cpp's defaults apply
(tuned for the machine that builds). NVIDIA CUDA is the only GPU backend chosen by itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

VERSION = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz on PyPI: the source built is the source reviewed.
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
WHEELHOUSE = Path(".llama-wheels")
RECORD_NAME = "llama-build.json"

# Multimodal (mtmd) support is not used: leaving it out saves a fifth of the build.
COMMON_ARGS = ("-DLLAVA_BUILD=OFF",)
# x86-64-v3 without -march=native: portable, vector code kept, AMX off.
X86_64_CPU_ARGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_SSE42=ON",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX512=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
)


@dataclass(frozen=True)
class BuildPlan:
    """Which llama.cpp to build on this machine, and why."""

    backend: str  # "cpu" or "cuda"
    cmake_args: tuple[str, ...]
    reason: str

    @property
    def key(self) -> str:
        """Names the build: version, source, target platform and every flag."""
        identity = [VERSION, SDIST_SHA256, sys.platform, platform.machine(), *self.cmake_args]
        return hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GpuProbe:
    """What the machine says about NVIDIA GPUs and the CUDA toolkit."""

    compute_caps: tuple[str, ...]  # e.g. ("9.0",), one per GPU; empty: none visible
    nvcc: str | None  # path of the CUDA compiler, None: no toolkit


def query_gpus(field: str) -> list[str]:
    """One ``nvidia-smi --query-gpu`` field, a line per GPU; none without a working driver."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={field}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def probe_gpu() -> GpuProbe:
    """Ask ``nvidia-smi`` for the GPUs' compute capabilities and look for ``nvcc``."""
    caps = tuple(query_gpus("compute_cap"))
    candidates = [
        shutil.which("nvcc"),
        str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"),
    ]
    nvcc = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    return GpuProbe(caps, nvcc)


def cpu_args(machine: str) -> tuple[str, ...]:
    """CPU flags: portable x86-64-v3 without AMX on x86-64, llama.cpp's defaults elsewhere."""
    return X86_64_CPU_ARGS if machine.lower() in ("x86_64", "amd64") else ()


def plan_build(
    probe: GpuProbe, machine: str, environ: dict[str, str] | os._Environ[str]
) -> BuildPlan:
    """Choose the build for this machine: CUDA where it can run, else the CPU build."""
    wanted = environ.get("RAG_LLAMA_BACKEND", "auto").lower()
    if wanted not in ("auto", "cpu", "cuda"):
        msg = f"RAG_LLAMA_BACKEND={wanted!r}: expected auto, cpu or cuda"
        raise ValueError(msg)
    cpu = COMMON_ARGS + cpu_args(machine)
    archs = environ.get("RAG_LLAMA_CUDA_ARCHS") or ";".join(
        sorted({cap.replace(".", "") for cap in probe.compute_caps})
    )
    if wanted == "cpu":
        return BuildPlan("cpu", cpu, "CPU build: RAG_LLAMA_BACKEND=cpu")
    if wanted == "auto" and not probe.compute_caps:
        return BuildPlan("cpu", cpu, "CPU build: no NVIDIA GPU found (nvidia-smi)")
    if probe.nvcc is None:
        if wanted == "cuda":
            msg = "RAG_LLAMA_BACKEND=cuda, but the CUDA toolkit (nvcc) is not installed"
            raise ValueError(msg)
        return BuildPlan(
            "cpu",
            cpu,
            "CPU build: an NVIDIA GPU is present but the CUDA toolkit (nvcc) is not; "
            "install it and run make again to answer on the GPU",
        )
    if not archs:
        msg = "RAG_LLAMA_BACKEND=cuda with no GPU visible: set RAG_LLAMA_CUDA_ARCHS (e.g. 90)"
        raise ValueError(msg)
    cuda = (
        *cpu,
        "-DGGML_CUDA=ON",
        f"-DCMAKE_CUDA_ARCHITECTURES={archs}",
        f"-DCMAKE_CUDA_COMPILER={probe.nvcc}",
    )
    return BuildPlan("cuda", cuda, f"CUDA build for compute capability {archs}")


def record_path(prefix: Path) -> Path:
    """Where a virtual environment records the build it holds."""
    return prefix / RECORD_NAME


def read_record(prefix: Path) -> dict[str, object] | None:
    """The build a virtual environment recorded, or None."""
    try:
        return dict(json.loads(record_path(prefix).read_text()))
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(message: str) -> None:
    print(f"llama.cpp: {message}", file=sys.stderr, flush=True)


def build_wheel(plan: BuildPlan, python: Path, wheelhouse: Path) -> Path:
    """The wheel for ``plan``: from the wheelhouse, else built from the verified source."""
    folder = wheelhouse / f"{VERSION}-{plan.key}"
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[0]
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheelhouse, prefix="tmp-") as scratch:
        work = Path(scratch)
        pip = [str(python), "-m", "pip"]
        download = ["download", "--quiet", "--no-deps", "--no-binary", ":all:", "--no-cache-dir"]
        subprocess.run(
            [*pip, *download, "-d", str(work), f"llama-cpp-python=={VERSION}"], check=True
        )
        sdist = work / f"llama_cpp_python-{VERSION}.tar.gz"
        if _sha256(sdist) != SDIST_SHA256:
            msg = f"{sdist.name}: sha256 differs from the reviewed source; not building it"
            raise RuntimeError(msg)
        environment = {k: v for k, v in os.environ.items() if k not in ("FORCE_CMAKE",)}
        environment["CMAKE_ARGS"] = " ".join(plan.cmake_args)
        environment.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        _say(f"building {VERSION} ({plan.reason}); several minutes, once per set of flags")
        _say(f"CMAKE_ARGS={environment['CMAKE_ARGS']}")
        started = time.monotonic()
        wheel_options = [
            "--quiet",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            "llama-cpp-python",
        ]
        subprocess.run(
            [*pip, "wheel", *wheel_options, "-w", str(work / "out"), str(sdist)],
            env=environment,
            check=True,
        )
        seconds = round(time.monotonic() - started)
        (wheel,) = (work / "out").glob("llama_cpp_python-*.whl")
        info = {**asdict(plan), "key": plan.key, "version": VERSION, "build_seconds": seconds}
        (work / "out" / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        (work / "out").rename(folder)  # whole or not at all: a killed build leaves no wheel
        _say(f"built in {seconds} s: {folder / wheel.name}")
    return folder / wheel.name


def ensure(python: Path, wheelhouse: Path, environ: dict[str, str] | os._Environ[str]) -> int:
    """Install the build this machine should run into ``python``'s environment, if needed."""
    plan = plan_build(probe_gpu(), platform.machine(), environ)
    prefix = Path(
        subprocess.run(
            [str(python), "-c", "import sys; print(sys.prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    record = read_record(prefix)
    if record is not None and record.get("key") == plan.key:
        _say(f"{plan.reason}; installed build {plan.key} is current")
        return 0
    wheel = build_wheel(plan, python, wheelhouse.resolve())
    install = ["install", "--quiet", "--no-deps", "--force-reinstall", "--no-cache-dir"]
    subprocess.run([str(python), "-m", "pip", *install, str(wheel)], check=True)
    info = {
        **asdict(plan),
        "key": plan.key,
        "version": VERSION,
        "wheel": str(wheel),
        "wheel_sha256": _sha256(wheel),
    }
    record_path(prefix).write_text(json.dumps(info, indent=2) + "\n")
    _say(f"installed {wheel.name} ({plan.reason})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python rag/llama_build.py [--python PY] [--wheelhouse DIR] [--plan]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    parser.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    parser.add_argument("--plan", action="store_true", help="print the plan; build nothing")
    args = parser.parse_args(argv)
    try:
        if args.plan:
            plan = plan_build(probe_gpu(), platform.machine(), os.environ)
            print(json.dumps({**asdict(plan), "key": plan.key}, indent=2))
            return 0
        return ensure(args.python, args.wheelhouse, os.environ)
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as error:
        _say(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

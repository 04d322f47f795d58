"""The llama.cpp build: chosen for the machine, portable, and the one actually installed."""

import hashlib
import platform
import sys
import zipfile
from pathlib import Path

import pytest

from rag import llama_build
from rag.llama_build import BuildPlan, GpuProbe, plan_build

NO_GPU = GpuProbe(compute_caps=(), nvcc=None)
H100_WITH_TOOLKIT = GpuProbe(compute_caps=("9.0",), nvcc="/usr/local/cuda/bin/nvcc")
H100_NO_TOOLKIT = GpuProbe(compute_caps=("9.0",), nvcc=None)


def test_no_gpu_gets_the_portable_cpu_build() -> None:
    plan = plan_build(NO_GPU, "x86_64", {})
    assert plan.backend == "cpu"
    assert "no NVIDIA GPU" in plan.reason
    assert "-DGGML_NATIVE=OFF" in plan.cmake_args  # never -march=native
    assert "-DGGML_AVX2=ON" in plan.cmake_args  # yet the vector code stays
    assert "-DGGML_AMX_INT8=OFF" in plan.cmake_args  # the code path that crashed
    assert not any("CUDA" in arg for arg in plan.cmake_args)


def test_a_gpu_with_the_toolkit_gets_cuda_for_its_architecture() -> None:
    plan = plan_build(H100_WITH_TOOLKIT, "x86_64", {})
    assert plan.backend == "cuda"
    assert "-DGGML_CUDA=ON" in plan.cmake_args
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in plan.cmake_args
    assert "-DGGML_AMX_INT8=OFF" in plan.cmake_args  # its CPU part is portable too
    two_kinds = GpuProbe(("8.6", "9.0", "8.6"), "/usr/bin/nvcc")
    assert "-DCMAKE_CUDA_ARCHITECTURES=86;90" in plan_build(two_kinds, "x86_64", {}).cmake_args


def test_a_gpu_without_the_toolkit_gets_the_cpu_build_and_says_why() -> None:
    plan = plan_build(H100_NO_TOOLKIT, "x86_64", {})
    assert plan.backend == "cpu"
    assert "CUDA toolkit (nvcc) is not" in plan.reason


def test_the_choice_can_be_forced_and_bad_requests_are_clear() -> None:
    assert plan_build(H100_WITH_TOOLKIT, "x86_64", {"RAG_LLAMA_BACKEND": "cpu"}).backend == "cpu"
    forced = plan_build(
        GpuProbe((), "/usr/bin/nvcc"),
        "x86_64",
        {"RAG_LLAMA_BACKEND": "cuda", "RAG_LLAMA_CUDA_ARCHS": "89"},
    )
    assert "-DCMAKE_CUDA_ARCHITECTURES=89" in forced.cmake_args
    with pytest.raises(ValueError, match="nvcc"):
        plan_build(H100_NO_TOOLKIT, "x86_64", {"RAG_LLAMA_BACKEND": "cuda"})
    with pytest.raises(ValueError, match="RAG_LLAMA_CUDA_ARCHS"):
        plan_build(GpuProbe((), "/usr/bin/nvcc"), "x86_64", {"RAG_LLAMA_BACKEND": "cuda"})
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        plan_build(NO_GPU, "x86_64", {"RAG_LLAMA_BACKEND": "rocm"})


def test_other_cpus_keep_llamas_defaults_and_every_flag_changes_the_key() -> None:
    assert plan_build(NO_GPU, "aarch64", {}).cmake_args == llama_build.COMMON_ARGS
    cpu = plan_build(NO_GPU, "x86_64", {})
    assert cpu.key == plan_build(NO_GPU, "x86_64", {}).key
    assert cpu.key != plan_build(H100_WITH_TOOLKIT, "x86_64", {}).key
    assert cpu.key != BuildPlan("cpu", (*cpu.cmake_args, "-DGGML_AVX512=ON"), "").key


@pytest.mark.slow
def test_the_installed_llama_cpp_is_the_build_the_project_made_for_this_machine() -> None:
    record = llama_build.read_record(Path(sys.prefix))
    assert record is not None, "llama-cpp-python was not installed by rag/llama_build.py"
    plan = plan_build(llama_build.probe_gpu(), platform.machine(), {})
    assert record["key"] == plan.key
    assert list(record["cmake_args"]) == list(plan.cmake_args)  # type: ignore[call-overload]
    wheel = Path(str(record["wheel"]))
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == record["wheel_sha256"]
    # Every library the wheel holds is, byte for byte, the one Python loads.
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    with zipfile.ZipFile(wheel) as built:
        libraries = [n for n in built.namelist() if n.startswith("llama_cpp/lib/")]
        assert any("libllama" in n for n in libraries)
        for name in libraries:
            installed = lib / Path(name).name
            assert installed.read_bytes() == built.read(name), name


@pytest.mark.slow
def test_the_cpu_code_is_portable_and_never_takes_the_amx_path() -> None:
    from rag.models.llama_cpp_llm import llama_system_info

    info = llama_system_info()
    assert "AMX_INT8 = 1" not in info
    if platform.machine() == "x86_64":
        assert "AVX2 = 1" in info
        assert "AVX512 = 1" not in info  # runs on every x86-64-v3 CPU, not only this one

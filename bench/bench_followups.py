"""Follow-ups on the public follow-up set (bench/followups/qa.jsonl): before and after rewriting.

Each row is a first question and a follow-up that leans on it ('What does it return?') over
the pydoc or the R manuals corpus. The follow-up is asked three ways, in one run, with the
bundled models: in the chat after the first question with the follow-up rewritten into a
question that stands alone (``answer.rewrite_follow_ups``, the default), in the chat with the
earlier question joined to its search instead (the way before), and alone. Figures: follow-ups
answered correctly, the gold file cited, the gold page cited (R manuals), and the ratio of the
rewritten figure to the one before.

``--model instruct|PATH`` asks another model (as bench_answer.py does): an instruction-tuned
one rewrites the follow-ups itself.

Usage: python bench/bench_followups.py [--set FILE] [--model instruct|PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_answer import instruct_model

from rag.answering.answer import Turn
from rag.evaluation import EvalQuestion, EvalRow, load_questions, score
from rag.pipeline import Pipeline
from rag.settings import load_settings

HERE = Path(__file__).resolve().parent
SHARED_EVAL = HERE.parents[1] / "shared" / "eval"
WAYS = ("rewritten", "joined (before)", "alone")


def corpus_of(path: Path) -> dict[str, str]:
    """Each row's corpus, by id (the question set's own loader keeps no corpus)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["id"]: row["corpus"] for row in rows}


def ask_all(
    corpus: str, questions: list[EvalQuestion], work: Path, model: Path | None
) -> dict[str, list[EvalRow]]:
    """Each follow-up asked the three ways over one corpus."""
    settings = load_settings(data_dir=work / corpus)
    if model:
        settings.llm.llama_cpp.model_path = model
    joined = settings.model_copy(deep=True)
    joined.answer.rewrite_follow_ups = False
    rows: dict[str, list[EvalRow]] = defaultdict(list)
    with Pipeline(settings) as pipeline:
        assert pipeline.ingestor.sync([SHARED_EVAL / corpus / "corpus"]).ok
        with Pipeline(joined, embedder=pipeline.embedder, llm=pipeline.llm) as before:
            for question in questions:
                history = [Turn(question.first, pipeline.answerer.ask(question.first).text)]
                after = pipeline.answerer.ask(question.question, history)
                rows["rewritten"].append(score(question, after))
                rows["joined (before)"].append(
                    score(question, before.answerer.ask(question.question, history))
                )
                rows["alone"].append(score(question, pipeline.answerer.ask(question.question)))
                print(f"{question.id}: {after.standalone_question or question.question}")
    return rows


def figures(rows: list[EvalRow]) -> dict[str, Any]:
    """Correct, gold file cited, gold page cited (of the rows with pages)."""
    paged = [row for row in rows if row.question.pages]
    return {
        "questions": len(rows),
        "correct": sum(row.correct for row in rows),
        "gold_file_cited": sum(row.cited_gold > 0 for row in rows),
        "gold_page_cited": sum(row.cited_gold_pages > 0 for row in paged),
        "with_pages": len(paged),
        "wrong_refusals": sum(row.answer.refused for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=HERE / "followups" / "qa.jsonl")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", help="'instruct', or a GGUF path (default: the bundled one)")
    args = parser.parse_args()
    model = instruct_model() if args.model == "instruct" else args.model and Path(args.model)
    questions = load_questions(args.set)
    corpora = corpus_of(args.set)
    rows: dict[str, list[EvalRow]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-followups-") as work:
        for corpus in sorted(set(corpora.values())):
            mine = [q for q in questions if corpora[q.id] == corpus]
            for way, found in ask_all(corpus, mine, Path(work), model).items():
                rows[way] += found
    results = {way: figures(rows[way]) for way in WAYS}
    print(f"\nfollow-ups ({len(questions)}, of which {results['alone']['with_pages']} with pages):")
    print(f"{'':24}" + "".join(f"{way:>18}" for way in WAYS) + f"{'ratio after/before':>20}")
    for name in ("correct", "gold_file_cited", "gold_page_cited", "wrong_refusals"):
        values = [results[way][name] for way in WAYS]
        before = results["joined (before)"][name]
        ratio = f"{results['rewritten'][name] / before:.2f}" if before else "n/a"
        print(f"{name:24}" + "".join(f"{value:>18}" for value in values) + f"{ratio:>20}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

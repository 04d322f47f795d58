"""Answers on a real documentation folder no one here wrote: the files a Debian system ships.

The folder is assembled from ``/usr/share/doc`` by ``bench/realfolder/files.txt`` (an HTML
manual with navigation lines, two PDF manuals with a table of contents or an index, READMEs,
copyright files and specs without an extension or with one this project does not list, and a
gzip changelog that must be skipped); ``bench/realfolder/qa.jsonl`` holds the questions with
their gold files and pages, and questions the folder cannot answer. It prints the scoring of
:mod:`rag.evaluation` and when the first text that stands is shown, against before answers
settled (``bench_answer.first_text_that_stands``).

Usage: python bench/bench_realfolder.py [--docs /usr/share/doc] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_answer import first_text_that_stands, print_first_text

from rag.evaluation import evaluate, load_questions
from rag.pipeline import Pipeline
from rag.settings import load_settings

HERE = Path(__file__).resolve().parent / "realfolder"


def assemble(docs: Path, into: Path) -> None:
    """Copy the listed files, keeping their package folders; a missing one stops the run."""
    for line in (HERE / "files.txt").read_text().splitlines():
        source = docs / line
        if not source.is_file():
            sys.exit(f"error: {source} is missing: this set needs Debian's documentation files")
        target = into / line
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc"))
    parser.add_argument("--json", type=Path, help="write figures and every answer here")
    args = parser.parse_args()
    questions = load_questions(HERE / "qa.jsonl")
    with tempfile.TemporaryDirectory(prefix="bench-realfolder-") as work:
        corpus = Path(work) / "corpus"
        assemble(args.docs, corpus)
        settings = load_settings(data_dir=Path(work) / "data")
        with Pipeline(settings) as pipeline:
            report = pipeline.ingestor.sync([corpus])
            print(report.summary())
            for path, reason in report.skipped + report.failed:
                print(f"  not ingested: {Path(path).relative_to(corpus)}: {reason}")
            pipeline.answerer.load()
            result = evaluate(pipeline.answerer, questions, settings.retrieval.k)
    print(result.table())
    print_first_text(first_text_that_stands(result))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Measure answers against a question set: retrieval, accuracy, refusals, citations, latency.

The input is JSON lines, one question each: ``{"id", "question", "answers": [accepted
answers], "sources": [gold files], "pages": [gold pages, optional], "answerable": bool,
"first": the question before it in the same chat, for a follow-up set (optional)}``. An
answer is correct when it contains an accepted answer (case-insensitive); a citation is precise
when its passage is in a gold file. Where a set names pages (1-based, as the PDF counts them),
retrieval and citations are also scored by page: a gold page is a gold file's page in ``pages``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering.answer import Answer, Turn
from rag.answering.answerer import Answerer, AskOptions
from rag.errors import SettingsError


@dataclass(frozen=True)
class EvalQuestion:
    """One line of the question set."""

    id: str
    question: str
    answers: list[str]
    sources: list[str]
    answerable: bool
    pages: list[int] = field(default_factory=list)
    first: str = ""  # in a follow-up set: the question asked before this one, in the same chat

    def gold(self, source: str, also_in: Iterable[str], page: int | None) -> tuple[bool, bool]:
        """Whether a passage is in a gold file, and whether it is on a gold page."""
        in_file = bool({source, *also_in} & set(self.sources))
        return in_file, in_file and page is not None and page in self.pages


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read a JSON-lines question set.

    Raises:
        SettingsError: a line is not a question (with the file and line number), or there
            are none.
    """
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(
                EvalQuestion(
                    str(item["id"]),
                    str(item["question"]),
                    [str(a) for a in item.get("answers", [])],
                    [str(s) for s in item.get("sources", [])],
                    bool(item.get("answerable", True)),
                    [int(page) for page in item.get("pages", [])],
                    str(item.get("first", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            msg = f"{path}, line {number}: not a question ({error!r})"
            raise SettingsError(msg) from error
    if not questions:
        msg = f"{path} holds no questions"
        raise SettingsError(msg)
    return questions


@dataclass
class EvalRow:
    """How one question went."""

    question: EvalQuestion
    answer: Answer
    rank: int | None  # of the first retrieved chunk from a gold file, 1-based
    correct: bool
    cited: int
    cited_gold: int
    page_rank: int | None = None  # of the first retrieved chunk on a gold page, 1-based
    cited_gold_pages: int = 0


@dataclass
class EvalReport:
    """The figures over a question set."""

    k: int
    rows: list[EvalRow] = field(default_factory=list)

    @property
    def answerable(self) -> list[EvalRow]:
        """Rows of questions the corpus answers."""
        return [row for row in self.rows if row.question.answerable]

    @property
    def unanswerable(self) -> list[EvalRow]:
        """Rows of questions the corpus does not answer."""
        return [row for row in self.rows if not row.question.answerable]

    def figures(self) -> dict[str, Any]:
        """All figures, as ``rag eval --json`` prints them."""
        answerable, unanswerable = self.answerable, self.unanswerable
        cited = sum(row.cited for row in answerable)
        figures: dict[str, Any] = {
            "questions": len(self.rows),
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            f"hit@{self.k}": _ratio(sum(row.rank is not None for row in answerable), answerable),
            "mrr": _mean([1 / row.rank if row.rank else 0.0 for row in answerable]),
            "accuracy": _ratio(sum(row.correct for row in answerable), answerable),
            "refusal_rate": _ratio(sum(row.answer.refused for row in unanswerable), unanswerable),
            "wrong_refusals": sum(row.answer.refused for row in answerable),
            "citation_precision": (
                sum(row.cited_gold for row in answerable) / cited if cited else None
            ),
            "unsupported": sum(not row.answer.supported for row in self.rows),
        }
        paged = [row for row in answerable if row.question.pages]
        if paged:
            found = [row for row in paged if row.page_rank is not None]
            cited_paged = sum(row.cited for row in paged)
            figures[f"page_hit@{self.k}"] = _ratio(len(found), paged)
            figures["cited_page_precision"] = (
                sum(row.cited_gold_pages for row in paged) / cited_paged if cited_paged else None
            )
            # The goal: whenever retrieval found a gold page, the answer cites one.
            figures["cited_page_when_found"] = _ratio(
                sum(row.cited_gold_pages > 0 for row in found), found
            )
        for timing in ("retrieval_s", "first_token_s", "total_s"):
            values = [row.answer.timings.get(timing, 0.0) for row in self.rows]
            figures[f"{timing}_p50"] = round(float(np.percentile(values, 50)), 4)
            figures[f"{timing}_p95"] = round(float(np.percentile(values, 95)), 4)
        return figures

    def to_json(self) -> dict[str, Any]:
        """Figures and every question's outcome."""
        return {
            "figures": self.figures(),
            "questions": [
                {
                    "id": row.question.id,
                    "answerable": row.question.answerable,
                    "rank": row.rank,
                    "correct": row.correct,
                    "refused": row.answer.refused,
                    "cited": row.cited,
                    "cited_gold": row.cited_gold,
                    "page_rank": row.page_rank,
                    "cited_gold_pages": row.cited_gold_pages,
                    **row.answer.to_json(),
                }
                for row in self.rows
            ],
        }

    def table(self) -> str:
        """The figures, one per line, for people."""
        figures = self.figures()
        lines = []
        for name, value in figures.items():
            shown = (
                "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else value
            )
            lines.append(f"{name:<22} {shown}")
        return "\n".join(lines)


def evaluate(
    answerer: Answerer,
    questions: Iterable[EvalQuestion],
    k: int,
    on_row: Callable[[EvalRow], object] | None = None,
) -> EvalReport:
    """Ask every question and score the answers.

    A question with a ``first`` is a follow-up: the first question is asked, and this one after
    it in the same chat; only this one is scored.
    """
    report = EvalReport(k)
    options = AskOptions(k=k)
    for question in questions:
        history = []
        if question.first:
            history = [Turn(question.first, answerer.ask(question.first, options=options).text)]
        row = score(question, answerer.ask(question.question, history, options))
        report.rows.append(row)
        if on_row:
            on_row(row)
    return report


def score(question: EvalQuestion, answer: Answer) -> EvalRow:
    """How one answer went: where the gold passages ranked, whether it is right, what it cites.

    Any pipeline's answer can be scored so (the benchmarks' baselines too): its ``retrieved``
    chunks in rank order, its ``citations``, and whether it ``refused``.
    """
    retrieved = [
        question.gold(str(chunk.metadata["source"]), chunk.also_in, _page(chunk.metadata))
        for chunk in [s.chunk for s in answer.retrieved] + answer.left_out
    ]
    cited = [question.gold(c.source, c.also_in, c.page) for c in answer.citations]
    text = answer.text.lower()
    return EvalRow(
        question,
        answer,
        rank=_first(in_file for in_file, _ in retrieved),
        correct=not answer.refused and any(a.lower() in text for a in question.answers),
        cited=len(cited),
        cited_gold=sum(in_file for in_file, _ in cited),
        page_rank=_first(on_page for _, on_page in retrieved),
        cited_gold_pages=sum(on_page for _, on_page in cited),
    )


def _first(flags: Iterable[bool]) -> int | None:
    """The 1-based rank of the first true flag, or None."""
    return next((rank for rank, flag in enumerate(flags, start=1) if flag), None)


def _page(metadata: Mapping[str, Any]) -> int | None:
    page = metadata.get("page")
    return int(page) if page is not None else None


def _ratio(count: int, rows: list[EvalRow]) -> float | None:
    return count / len(rows) if rows else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None

"""Measure answers against a question set: retrieval, accuracy, refusals, citations, latency.

The input is JSON lines, one question each: ``{"id", "question", "answers": [accepted
answers], "sources": [gold files], "answerable": bool}``. An answer is correct when it contains
an accepted answer (case-insensitive); a citation is precise when its passage is in a gold file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering import Answer, Answerer
from rag.errors import SettingsError


@dataclass(frozen=True)
class EvalQuestion:
    """One line of the question set."""

    id: str
    question: str
    answers: list[str]
    sources: list[str]
    answerable: bool


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
    """Ask every question (no chat history) and score the answers."""
    report = EvalReport(k)
    for question in questions:
        answer = answerer.ask(question.question, k=k)
        gold = set(question.sources)
        retrieved = [s.chunk for s in answer.sources] + answer.left_out
        rank = next(
            (
                i
                for i, chunk in enumerate(retrieved, start=1)
                if {str(chunk.metadata["source"]), *chunk.also_in} & gold
            ),
            None,
        )
        text = answer.text.lower()
        correct = not answer.refused and any(a.lower() in text for a in question.answers)
        cited_gold = sum(bool({c.source, *c.also_in} & gold) for c in answer.citations)
        row = EvalRow(question, answer, rank, correct, len(answer.citations), cited_gold)
        report.rows.append(row)
        if on_row:
            on_row(row)
    return report


def _ratio(count: int, rows: list[EvalRow]) -> float | None:
    return count / len(rows) if rows else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None

"""What an answer is: its text, the numbered sources it was given, its citations, timings.

Plain data that every front door reads; ``Answer.to_json`` is the one JSON shape of ``rag ask
--json`` and of what the API sends beside the text.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.retrieval.retriever import Retrieved


@dataclass(frozen=True)
class Source:
    """A retrieved chunk as numbered in the prompt, with the text the model was shown."""

    number: int
    chunk: Retrieved
    excerpt: str

    @property
    def source(self) -> str:
        """The file the chunk comes from, relative to its ingested folder."""
        return str(self.chunk.metadata["source"])

    @property
    def page(self) -> int | None:
        """The page (PDF) the chunk starts on, else None."""
        page = self.chunk.metadata.get("page")
        return int(page) if page is not None else None

    @property
    def location(self) -> str | None:
        """Where in the file, where 'page 3' would not say it: 'slide 3', 'sheet Costs, row 4'."""
        location = self.chunk.metadata.get("location")
        return str(location) if location is not None else None

    @property
    def label(self) -> str:
        """'file, page 3' as the prompt and the reader see it."""
        return source_label(self.source, self.page, location=self.location)


@dataclass(frozen=True)
class Citation:
    """A source the answer cites: by an ``[n]`` marker the model wrote, or inferred."""

    number: int
    source: str
    page: int | None
    snippet: str
    similarity: float  # cosine similarity of the chunk to the question
    also_in: tuple[str, ...]  # other files holding the same passage
    by_model: bool  # False: the model cited nothing and the best-supporting source was added
    location: str | None = None  # 'slide 3', 'sheet Costs, rows 2–14': said instead of the page

    @property
    def label(self) -> str:
        """'file, page 3 (also in other.md)' as the reader sees it."""
        return source_label(self.source, self.page, self.also_in, self.location)


def source_label(
    source: str, page: int | None, also_in: Sequence[str] = (), location: str | None = None
) -> str:
    """'file, page 3 (also in other.md)': where a passage is, as every front door writes it.

    ``location`` ('slide 3', 'sheet Costs, rows 2–14', 'chapter 2') is said instead of the page.
    """
    where = location if location else f"page {page}" if page is not None else None
    return (
        source
        + (f", {where}" if where else "")
        + (f" (also in {', '.join(also_in)})" if also_in else "")
    )


def label_of(entry: Mapping[str, Any]) -> str:
    """The label of a citation or source as the JSON shape (and a stored chat) holds it."""
    return source_label(
        entry["source"], entry.get("page"), entry.get("also_in", ()), entry.get("location")
    )


QUOTED_NOTICE = (
    "The model's answer was not in the passage that matches the question best; "
    "that passage is quoted instead."
)
UNSUPPORTED_NOTICE = "the cited sources do not hold this answer's words; check it against them"


@dataclass(frozen=True)
class Notice:
    """What a reader must know of an answer besides its text, worded once for every door."""

    kind: Literal["note", "warning"]
    text: str


@dataclass
class Answer:
    """Everything about one answer: text, citations, the chunks retrieved for it, timings."""

    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[Source] = field(default_factory=list)  # numbered as in the prompt
    left_out: list[Retrieved] = field(default_factory=list)  # retrieved, over the token budget
    refused: bool = False  # it says it does not know
    supported: bool = True  # False: its cited sources do not hold most of its words
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    model_text: str | None = None  # what the model wrote, when no source held it and a quote
    # of the best passage replaced it
    warnings: list[str] = field(default_factory=list)  # what the reader should know of it
    standalone_question: str | None = None  # a follow-up as it was searched for and answered

    @property
    def notices(self) -> list[Notice]:
        """A quote that replaced the model's words, the warnings, an unsupported answer."""
        found = []
        if self.model_text is not None:
            found.append(Notice("note", f"{QUOTED_NOTICE} The model wrote: {self.model_text}"))
        found += [Notice("warning", warning) for warning in self.warnings]
        if not self.supported:
            found.append(Notice("warning", UNSUPPORTED_NOTICE))
        return found

    def to_json(self) -> dict[str, Any]:
        """The shape of ``rag ask --json``, and of what the API sends beside the text."""
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.text,
            "refused": self.refused,
            "supported": self.supported,
            "model_text": self.model_text,
            "warnings": self.warnings,
            "notices": [{"kind": n.kind, "text": n.text} for n in self.notices],
            "citations": [
                {
                    "number": c.number,
                    "source": c.source,
                    "page": c.page,
                    "location": c.location,
                    "similarity": round(c.similarity, 4),
                    "snippet": c.snippet,
                    "also_in": list(c.also_in),
                    "cited_by_model": c.by_model,
                }
                for c in self.citations
            ],
            "retrieved": [
                {
                    "number": s.number,
                    "source": s.source,
                    "page": s.page,
                    "location": s.location,
                    "similarity": round(s.chunk.similarity, 4),
                    "fused_score": round(s.chunk.fused_score, 4),
                }
                for s in self.retrieved
            ],
            "left_out": [str(chunk.metadata["source"]) for chunk in self.left_out],
            "timings": {name: round(seconds, 4) for name, seconds in self.timings.items()},
        }


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a chat."""

    question: str
    answer: str


class AnswerStream:
    """The answer's text piece by piece as it settles; ``answer`` once it is done.

    Every piece is text of the final answer, so the pieces joined are ``answer.text``.
    """

    def __init__(self, pieces: Generator[str, None, Answer]) -> None:
        self._pieces = pieces
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        if self.answer is None:  # a second pass over a finished stream changes nothing
            self.answer = yield from self._pieces

    def close(self) -> None:
        """Stop the model now (a reader gone): its stream lets go of the model at once."""
        self._pieces.close()

    def result(self) -> Answer:
        """Read the rest of the stream and return the finished answer."""
        for _ in self:
            pass
        if self.answer is None:
            raise RuntimeError("the answer's stream was closed before it finished")
        return self.answer

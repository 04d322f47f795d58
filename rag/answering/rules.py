"""The answer rules that follow the kind of model (base or instruction-tuned).

What helps a small base model hurts a larger instruction-tuned one. The bundled Gemma 3 270M (a
base model) answers best when it is shown each source's two best sentence pairs, when its
sampling favours the sources' own tokens (the copy bias) and when its answer is replaced by a
quote of the passage that matches the question best whenever that passage does not hold it.
An instruction-tuned model answers best from whole chunks, unbiased, in its own words, quoted
over only when no cited source holds them or when it refuses although a passage matches well
(never quoting over it left 13 of pydoc's 28 answerable questions refused). Each setting left
unset (``answer.quote``, ``answer.excerpt_windows``, ``llm.llama_cpp.copy_bias``) takes its
kind's value; the figures behind them are in docs/benchmarks.md. Limits: two kinds, told apart
by the model's name (``llm.instruction_tuned`` overrides it); size is not a kind of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.settings import AnswerSettings, LLMSettings, QuotePolicy


@dataclass(frozen=True)
class AnswerRules:
    """The values a kind of model answers best with."""

    quote: QuotePolicy
    excerpt_windows: int  # sentence pairs of each source shown; 0: whole chunks
    copy_bias: float  # logit bonus for the sources' tokens


BASE = AnswerRules(QuotePolicy.OFF_PASSAGE, excerpt_windows=2, copy_bias=4.0)
INSTRUCTION_TUNED = AnswerRules(QuotePolicy.UNSUPPORTED, excerpt_windows=0, copy_bias=0.0)


def rules_for(answer: AnswerSettings, llm: LLMSettings, instruction_tuned: bool) -> AnswerRules:
    """The kind's rules, with what the settings set themselves kept."""
    kind = INSTRUCTION_TUNED if instruction_tuned else BASE
    return AnswerRules(
        answer.quote if answer.quote is not None else kind.quote,
        answer.excerpt_windows if answer.excerpt_windows is not None else kind.excerpt_windows,
        llm.llama_cpp.copy_bias if llm.llama_cpp.copy_bias is not None else kind.copy_bias,
    )

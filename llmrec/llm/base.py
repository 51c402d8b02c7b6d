"""The one interface every LLM backend implements: a batch of chat prompts in, a batch of texts out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol, Sequence

import pydantic.dataclasses
from pydantic import Field

from llmrec.config import NonNegativeFloat, NonNegativeInt, PositiveInt, Validated

Message = dict[str, str]
"""One chat turn: {"role": "system" | "user" | "assistant", "content": "..."}."""


@pydantic.dataclasses.dataclass(frozen=True)
class GenerationParams(Validated):
    """Sampling settings shared by all backends (checked like the config: ConfigError for a value out of range)."""

    max_tokens: PositiveInt = 80
    temperature: NonNegativeFloat = 0.3
    """0 = greedy."""
    top_p: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.9
    """Nucleus sampling: the smallest set of tokens whose probabilities reach top_p (0 < top_p <= 1)."""
    seed: NonNegativeInt = 42
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    """A GBNF grammar the completion must follow (backends with `supports_grammar`; llama.cpp)."""


@dataclass(frozen=True)
class Generation:
    """One completion with the token counts the backend reported (used for throughput numbers)."""

    text: str
    prompt_tokens: int
    output_tokens: int


class LLMBackend(Protocol):
    """Generates completions for chat prompts. `model_id` names the weights (it goes into cache keys)."""

    model_id: str
    supports_grammar: bool
    """Whether `GenerationParams.grammar` is honoured (grammar-constrained decoding)."""

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        """One completion per prompt, in order."""
        ...

    def close(self) -> None:
        """Free the model and its threads (an idle llama.cpp context keeps polling threads busy)."""
        ...

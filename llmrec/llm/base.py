"""The one interface every LLM backend implements: a batch of chat prompts in, a batch of texts out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

Message = dict[str, str]
"""One chat turn: {"role": "system" | "user" | "assistant", "content": "..."}."""


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings shared by all backends."""

    max_tokens: int = 80
    temperature: float = 0.3
    top_p: float = 0.9
    seed: int = 42
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """One completion with the token counts the backend reported (used for throughput numbers)."""

    text: str
    prompt_tokens: int
    output_tokens: int


class LLMBackend(Protocol):
    """Generates completions for chat prompts. `model_id` names the weights (it goes into cache keys)."""

    model_id: str

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        """One completion per prompt, in order."""
        ...

    def close(self) -> None:
        """Free the model and its threads (an idle llama.cpp context keeps polling threads busy)."""
        ...

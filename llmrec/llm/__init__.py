"""LLM backends behind one interface: `make_backend(config).generate(prompts, params) -> [Generation]`."""

from __future__ import annotations

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError
from llmrec.llm.base import Generation, GenerationParams, LLMBackend, Message


def make_backend(config: LLMConfig) -> LLMBackend:
    """The backend `config.backend` names, loaded with `config.model`."""
    if config.backend == "llamacpp":
        from llmrec.llm.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config)
    if config.backend == "transformers":
        from llmrec.llm.hf import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "openai":
        from llmrec.llm.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(config)
    raise ConfigError(f"llm.backend must be llamacpp, transformers or openai, not {config.backend!r}")


__all__ = ["Generation", "GenerationParams", "LLMBackend", "Message", "make_backend"]

"""LLM backends behind one interface: `make_backend(config).generate(prompts, params) -> [Generation]`."""

from __future__ import annotations

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.base import Generation, GenerationParams, LLMBackend, Message


def make_backend(config: LLMConfig, adapter: LoRAAdapter | None = None) -> LLMBackend:
    """The backend `config.backend` names, loaded with `config.model` (and a tuned LoRA `adapter` on top)."""
    backend = backend_class(config)
    if adapter is None:
        return backend(config)
    if not backend.takes_adapters:
        raise ConfigError("a LoRA adapter needs llm.backend llamacpp or transformers (an OpenAI-compatible "
                          "server loads adapters itself: name the adapted model in llm.model)")
    return backend(config, adapter)


def backend_class(config: LLMConfig) -> type:
    """The class of the backend `config.backend` names (imported on demand), without loading a model."""
    if config.backend == "llamacpp":
        from llmrec.llm.llamacpp import LlamaCppBackend

        return LlamaCppBackend
    if config.backend == "transformers":
        from llmrec.llm.hf import TransformersBackend

        return TransformersBackend
    if config.backend == "openai":
        from llmrec.llm.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend
    raise ConfigError(f"llm.backend must be llamacpp, transformers or openai, not {config.backend!r}")


__all__ = ["Generation", "GenerationParams", "LLMBackend", "Message", "make_backend"]

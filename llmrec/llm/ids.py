"""The id of the model a configuration names, known without loading it (store keys need it on every read)."""

from __future__ import annotations

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError


def model_id_for(config: LLMConfig) -> str:
    """`llamacpp:<file>.gguf`, the transformers model name or path, or `openai:<model>@<base url>`."""
    if config.backend == "llamacpp":
        from llmrec.llm.embedded import resolve_gguf

        return f"llamacpp:{resolve_gguf(config.model).name}"
    if config.backend == "transformers":
        return config.model
    if config.backend == "openai":
        from llmrec.llm.openai_compat import checked_base_url

        return f"openai:{config.model}@{checked_base_url(config.base_url)}"
    raise ConfigError(f"llm.backend must be llamacpp, transformers or openai, not {config.backend!r}")

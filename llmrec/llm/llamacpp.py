"""Backend for GGUF models run in-process with llama-cpp-python (the CPU default)."""

from __future__ import annotations

import atexit
import os
from typing import Sequence

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.base import Generation, GenerationParams, Message
from llmrec.llm.embedded import resolve_gguf
from llmrec.llm.ids import model_id_for


class LlamaCppBackend:
    """Runs a GGUF chat model with llama.cpp, one prompt at a time.

    Prompts that start with the same text (system message, few-shot turns) reuse the evaluated prefix: llama.cpp
    keeps the previous prompt's KV cache and only evaluates the tokens after the longest common prefix.
    """

    takes_adapters = True
    supports_grammar = True

    def __init__(self, config: LLMConfig, adapter: LoRAAdapter | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "llm.backend=llamacpp needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                "(builds from source, ~12 min on 2 cores)"
            ) from exc
        path = resolve_gguf(config.model)
        threads = config.threads or len(os.sched_getaffinity(0))
        self.model_id = adapter.model_id(model_id_for(config)) if adapter else model_id_for(config)
        lora = {"lora_path": str(adapter.gguf), "lora_scale": 1.0} if adapter else {}
        # prompt evaluation gets the same threads: llama-cpp-python would otherwise use every core for it, and
        # its spinning OpenMP threads slow everything else on the machine (and themselves) several-fold
        self._llama = Llama(model_path=str(path), n_ctx=config.n_ctx, n_threads=threads, n_threads_batch=threads,
                            verbose=False, **lora)
        atexit.register(self.close)  # freed before interpreter teardown, which would make llama.cpp's own cleanup fail

    def close(self) -> None:
        """Free the model (also done at exit)."""
        self._llama.close()

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        return [self._complete(messages, params) for messages in prompts]

    def _complete(self, messages: list[Message], params: GenerationParams) -> Generation:
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string(params.grammar, verbose=False) if params.grammar else None
        response = self._llama.create_chat_completion(
            messages=messages, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            seed=params.seed, stop=list(params.stop) or None, grammar=grammar,
        )
        usage = response.get("usage") or {}
        return Generation(text=response["choices"][0]["message"]["content"] or "",
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          output_tokens=int(usage.get("completion_tokens", 0)))

"""LazyBackend: an LLM backend that loads its model on the first `generate`, not when it is built."""

from __future__ import annotations

import threading
from typing import Sequence

from llmrec.config import LLMConfig
from llmrec.llm import backend_class, make_backend
from llmrec.llm.base import Generation, GenerationParams, LLMBackend, Message
from llmrec.llm.ids import model_id_for


class LazyBackend:
    """The backend `config` names (`make_backend`), loaded by the first `generate` call, on the thread that makes
    it: serving builds its explainer at once and lets the LLM worker's thread load the model when it first needs
    it, so no request waits for the load."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.model_id = model_id_for(config)
        self.supports_grammar: bool = backend_class(config).supports_grammar
        self._backend: LLMBackend | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._backend is not None

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        with self._lock:
            if self._backend is None:
                self._backend = make_backend(self.config)
            backend = self._backend
        return backend.generate(prompts, params)

    def close(self) -> None:
        """Free the model if it was loaded (the next `generate` loads it again)."""
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

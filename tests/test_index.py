"""ItemIndex against real ChromaDB: embedded (PersistentClient) and a `chroma run` server (HttpClient)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from llmrec.config import IndexConfig
from llmrec.errors import ConfigError
from llmrec.eval.ann import ann_recall, exact_similarity
from llmrec.index.chroma_index import CollectionMissingError, IndexUnavailableError, ItemIndex

MakeIndex = Callable[..., ItemIndex]


def clustered_vectors(n: int, dim: int = 128, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` random centres (text embeddings cluster like this)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(clusters, size=n)] + 0.5 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def ids(n: int) -> list[str]:
    return [f"item{i}" for i in range(n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A real Chroma server on a free local port, stopped after the module's tests."""
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    log = (tmp_path_factory.mktemp("chroma-server") / "server.log").open("w")
    process = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path_factory.mktemp("chroma-data")),
                                "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start; see {log.name}")
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(params=["embedded", "server"])
def make_index(request, tmp_path) -> MakeIndex:
    """Builds ItemIndex objects over one fresh collection, embedded or on the test server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    server = request.getfixturevalue("chroma_server") if request.param == "server" else None

    def make(**options) -> ItemIndex:
        if server:
            options = {"host": server[0], "port": server[1], **options}
        return ItemIndex(IndexConfig(**options), tmp_path / "chroma", name)

    return make


def test_upsert_count_and_query(make_index: MakeIndex) -> None:
    vectors = clustered_vectors(300)
    index = make_index()
    index.upsert(ids(300), vectors)
    assert index.count() == 300
    (hits,) = index.query(vectors[7:8], n=10)
    assert hits[0][0] == "item7" and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 10 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)

    index.upsert(["item7"], vectors[8:9])  # replaces, does not add
    assert index.count() == 300
    assert make_index().query(vectors[8:9], n=2)[0][0][1] == pytest.approx(1.0, abs=1e-4)


def test_query_excludes_seen_items(make_index: MakeIndex) -> None:
    vectors = clustered_vectors(300)
    index = make_index()
    index.upsert(ids(300), vectors)
    queries = vectors[:3]
    plain = index.query(queries, n=20)
    seen = [{item for item, _ in hits[:15]} for hits in plain]
    filtered = index.query(queries, n=20, exclude=seen)
    for hits, excluded, before in zip(filtered, seen, plain):
        assert len(hits) == 20 and not excluded & {item for item, _ in hits}
        assert [item for item, _ in hits[:5]] == [item for item, _ in before[15:20]]


def test_rebuild_recreates_the_collection(make_index: MakeIndex) -> None:
    vectors = clustered_vectors(300)
    make_index().upsert(ids(300), vectors)
    index = make_index(ef_search=50)
    index.rebuild(ids(100), vectors[:100])
    assert index.count() == 100
    assert index.query(vectors[150:151], n=100)[0][-1][0] in set(ids(100))


def test_recall_against_exact_search(make_index: MakeIndex) -> None:
    vectors = clustered_vectors(2000)
    index = make_index()
    index.upsert(ids(2000), vectors)
    queries = clustered_vectors(50, seed=1)
    assert ann_recall(index, queries, ids(2000), vectors, n=100) >= 0.95


def test_missing_collection_is_a_clear_error(make_index: MakeIndex) -> None:
    index = make_index()
    with pytest.raises(CollectionMissingError, match="does not exist"):
        index.count()
    with pytest.raises(CollectionMissingError):
        index.query(clustered_vectors(1), n=5)


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_scores_are_the_exact_similarity(tmp_path, space: str) -> None:
    vectors = clustered_vectors(200) * np.linspace(0.5, 2, 200, dtype=np.float32)[:, None]
    index = ItemIndex(IndexConfig(space=space), tmp_path, f"scores-{space}")
    index.upsert(ids(200), vectors)
    query = vectors[3:4] + 0.1
    (hits,) = index.query(query, n=20)
    exact = exact_similarity(query, vectors, space)[0]
    rows = [int(item.removeprefix("item")) for item, _ in hits]
    np.testing.assert_allclose([s for _, s in hits], exact[rows], rtol=1e-3, atol=1e-3)


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(IndexUnavailableError, match="cannot reach"):
        ItemIndex(IndexConfig(host="127.0.0.1", port=free_port()), None, "items")


def test_embedded_index_needs_a_path() -> None:
    with pytest.raises(ConfigError):
        ItemIndex(IndexConfig(), None, "items")

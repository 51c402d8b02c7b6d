"""Attribution: which of a user's past items and profile sentences a recommendation rests on, with weights, and
the deterministic plain-English explanation written from those facts alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from llmrec.profiles.digest import quote_title
from llmrec.profiles.hygiene import split_sentences

_SENTENCE_ENDS = (".", "!", "?")


@dataclass(frozen=True)
class Attribution:
    """Why `item` was recommended: weighted history items and profile sentences."""

    item: int
    """The recommended item's index (split indexing, 0 = padding)."""
    history: list[tuple[int, str, float]]
    """(item index, title, weight) of the most similar history items, weight descending. Weights are a softmax
    over the whole deduplicated history, so the listed ones sum to 1 or less."""
    profile_sentences: list[tuple[str, float]]
    """(sentence, weight) of the profile sentences closest to the item's text, weight descending."""
    long_term_weight: float | None = None
    """The fusion's weight on long-term interest for this user, when the model reports one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attribute(candidate: int, history: np.ndarray, item_table: np.ndarray, titles: Sequence[str],
              profile_text: str, sentence_vectors: np.ndarray | None, candidate_text_vector: np.ndarray | None,
              long_term_weight: float | None = None, max_items: int = 5, max_sentences: int = 2) -> Attribution:
    """Attribute `candidate` to the user's `history` (item indices; padding and repeats ignored) and profile.

    A history item's weight is a target-attention readout of the recommender's own item vectors: the softmax,
    over the deduplicated history, of `item_table[candidate] · item_table[item]`. A profile sentence's weight
    (sentences as `hygiene.split_sentences(profile_text)` gives them, `sentence_vectors` one row each) is the
    softmax of its cosine similarity to `candidate_text_vector`; without vectors there are none.
    """
    return Attribution(
        item=int(candidate),
        history=_history_weights(candidate, history, item_table, titles)[:max_items],
        profile_sentences=_sentence_weights(profile_text, sentence_vectors, candidate_text_vector)[:max_sentences],
        long_term_weight=None if long_term_weight is None else float(long_term_weight),
    )


def attribution_text(attribution: Attribution) -> str:
    """The explanation written from the attribution's facts only (also the fallback for LLM explanations)."""
    parts = []
    if attribution.history:
        chosen = ", ".join(f"{quote_title(title)} ({weight:.0%})" for _, title, weight in attribution.history)
        parts.append(f"Recommended because you chose {chosen}.")
    else:
        parts.append("Recommended without past choices to compare it with.")
    if attribution.profile_sentences:
        sentence = attribution.profile_sentences[0][0]
        parts.append(f"Your profile: {quote_title(sentence)}" + ("" if sentence.endswith(_SENTENCE_ENDS) else "."))
    if attribution.long_term_weight is not None:
        parts.append(f"Long-term interest weight {attribution.long_term_weight:.2f}.")
    return " ".join(parts)


def _history_weights(candidate: int, history: np.ndarray, item_table: np.ndarray,
                     titles: Sequence[str]) -> list[tuple[int, str, float]]:
    items = np.array(list(dict.fromkeys(int(i) for i in history if i > 0)), dtype=np.int64)
    if not len(items):
        return []
    weights = _softmax(item_table[items] @ item_table[candidate])
    order = sorted(range(len(items)), key=lambda k: (-weights[k], items[k]))
    return [(int(items[k]), titles[items[k]], float(weights[k])) for k in order]


def _sentence_weights(profile_text: str, sentence_vectors: np.ndarray | None,
                      candidate_text_vector: np.ndarray | None) -> list[tuple[str, float]]:
    sentences = split_sentences(profile_text)
    if sentence_vectors is None or candidate_text_vector is None or not sentences:
        return []
    if len(sentence_vectors) != len(sentences):
        raise ValueError(f"{len(sentence_vectors)} sentence vectors for {len(sentences)} profile sentences "
                         "(encode hygiene.split_sentences(profile_text))")
    weights = _softmax(_unit(sentence_vectors) @ _unit(candidate_text_vector))
    order = sorted(range(len(sentences)), key=lambda k: (-weights[k], k))
    return [(sentences[k], float(weights[k])) for k in order]


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores.astype(np.float64) - scores.max())
    return exp / exp.sum()


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)

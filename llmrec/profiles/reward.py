"""The reward a tuned profile writer learns from: how well a profile's text embedding ranks the items the user
chose next, against the whole catalog (BLUE-style retrieval reward; arXiv 2605.06981)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.ranking import Exclusion


class RetrievalReward:
    """AUC of held-out items under a profile's embedding: 1 - (items scored above the target) / candidates,
    averaged over the targets. Candidates are the items `llmrec.ranking.Exclusion` allows: every catalog item
    except padding, the user's long-term items and the targets. 1 = every target ranks first, 0.5 = a random
    ranking."""

    def __init__(self, encoder: ItemEncoder, item_vectors: np.ndarray, template_key: str) -> None:
        self.encoder = encoder
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.template_key = template_key

    def __call__(self, texts: Sequence[str], targets: Sequence[np.ndarray],
                 seen: Sequence[np.ndarray]) -> np.ndarray:
        """One reward per text; `targets[i]` and `seen[i]` are item indices of text i's user."""
        if not texts:
            return np.zeros(0)
        vectors = self.encoder.encode(list(texts), self.template_key)
        return np.array([retrieval_auc(self.item_vectors, v, t, s) for v, t, s in zip(vectors, targets, seen)])


def retrieval_auc(item_vectors: np.ndarray, vector: np.ndarray, targets: np.ndarray, seen: np.ndarray) -> float:
    """The reward of one user vector (see `RetrievalReward`); also the intrinsic check's AUC."""
    scores = item_vectors @ vector
    excluded = Exclusion([np.asarray(seen, dtype=np.int64)], [np.asarray(targets, dtype=np.int64)])
    pool = scores[~excluded.mask(len(scores))[0].numpy()]
    if not len(pool) or not len(targets):
        raise ValueError("a reward needs at least one target and one candidate item")
    above = np.array([(pool > scores[t]).sum() for t in targets])
    return float(1.0 - above.mean() / len(pool))

"""The reward a tuned profile writer learns from: how well a profile's text embedding ranks the items the user
chose next, against the whole catalog (BLUE-style retrieval reward; arXiv 2605.06981)."""

from __future__ import annotations

from typing import Callable, Sequence, get_args

import numpy as np

from llmrec.config import RewardMeasure
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.ranking import Exclusion

MEASURES: dict[str, Callable[[np.ndarray, int], float]] = {
    "auc": lambda above, pool: float(1.0 - above.mean() / pool),
    "ndcg": lambda above, pool: float(np.mean(1.0 / np.log2(above + 2.0))),
    "mrr": lambda above, pool: float(np.mean(1.0 / (above + 1.0))),
    "log-rank": lambda above, pool: float(np.mean(1.0 - np.log1p(above) / np.log1p(pool))),
}
"""Each `RewardMeasure` as a function of `above` (candidates scored above each target) and `pool` (candidates):
`auc` 1 - above / pool (a move from place 2,000 to 1,000 counts as much as one from 600 to 10); `ndcg`
1 / log2(above + 2); `mrr` 1 / (above + 1); `log-rank` 1 - log(1 + above) / log(1 + pool) (every halving of the
place counts the same). Each is 1 when the target ranks first, averaged over the targets."""
assert set(MEASURES) == set(get_args(RewardMeasure))
PROFILE_TEXT_KEY = "profile-text/retrieval"
"""The encoder's cache namespace for profile texts scored by a reward."""


class RetrievalReward:
    """A reward (`RewardMeasure`) of held-out items under a profile's embedding. Candidates are the items
    `llmrec.ranking.Exclusion` allows: every catalog item except padding, the user's long-term items and the
    targets."""

    def __init__(self, encoder: ItemEncoder, item_vectors: np.ndarray, measure: RewardMeasure = "auc") -> None:
        self.encoder = encoder
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.measure = measure

    def __call__(self, texts: Sequence[str], targets: Sequence[np.ndarray],
                 seen: Sequence[np.ndarray]) -> np.ndarray:
        """One reward per text; `targets[i]` and `seen[i]` are item indices of text i's user."""
        if not texts:
            return np.zeros(0)
        vectors = self.encoder.encode(list(texts), PROFILE_TEXT_KEY)
        return np.array([retrieval_reward(self.item_vectors, v, t, s, self.measure)
                         for v, t, s in zip(vectors, targets, seen)])


def retrieval_reward(item_vectors: np.ndarray, vector: np.ndarray, targets: np.ndarray, seen: np.ndarray,
                     measure: RewardMeasure = "auc") -> float:
    """The reward of one user vector (see `RetrievalReward`); with `auc`, also the intrinsic check's AUC."""
    return MEASURES[measure](*target_places(item_vectors, vector, targets, seen))


def target_places(item_vectors: np.ndarray, vector: np.ndarray, targets: np.ndarray,
                  seen: np.ndarray) -> tuple[np.ndarray, int]:
    """Per target, how many candidates `vector` scores above it, and the number of candidates (every catalog item
    but padding, `seen` and the targets)."""
    scores = item_vectors @ vector
    excluded = Exclusion([np.asarray(seen, dtype=np.int64)], [np.asarray(targets, dtype=np.int64)])
    pool = scores[~excluded.mask(len(scores))[0].numpy()]
    if not len(pool) or not len(targets):
        raise ValueError("a reward needs at least one target and one candidate item")
    return np.array([(pool > scores[t]).sum() for t in targets], dtype=np.float64), len(pool)

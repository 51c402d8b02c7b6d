"""Intrinsic profile quality: how well a profile alone retrieves the user's held-out item.

Each user becomes one fixed vector (the embedded profile text, or the mean of the long-term items' embeddings)
and the full-ranking evaluator ranks the whole catalog by dot product with it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from llmrec.encoders.item_encoder import ItemEncoder


class UserVectorScorer:
    """Scores = user_vectors[user] @ item_vectors.T; a Scorer for `FullRankingEvaluator`."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        self.user_vectors = torch.as_tensor(np.asarray(user_vectors), dtype=torch.float32)
        self.item_vectors = torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return self.user_vectors[torch.as_tensor(users, dtype=torch.long)] @ self.item_vectors.T


def profile_text_vectors(texts: Sequence[str], encoder: ItemEncoder, prompt_version: str) -> np.ndarray:
    """Embed profile texts with the item encoder (cached under the prompt version), one row per text."""
    return encoder.encode(list(texts), f"profile-text/{prompt_version}")

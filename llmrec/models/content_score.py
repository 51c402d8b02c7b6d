"""The interest model's frozen-content score (`interest.content_weight`): beside the learned interest score
<u, v_i>, the cosine similarity of the item's frozen text vector t_i to the user's content vector c_u, the
normalised mean of the recent items' text vectors (text-kNN's user vector, `llmrec.models.text_knn`), weighted
by a learned w > 0:

    score(u, i) = <u, v_i> + w * <c_u, t_i> = <[u ; w c_u], [v_i ; t_i]>

The frozen similarity discriminates among items that a learned low-dimensional text projection lumps together,
and it scores a cold item (one without interactions) exactly as it scores a warm one. Both terms live in one dot
product over concatenated vectors, so training, exact ranking and the inner-product ChromaDB index rank alike,
and an item added while serving joins with its text vector in both parts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContentScore(nn.Module):
    """The learned weight w, and the content vectors of the users and of the items. w is the content term's
    inverse temperature, learned in log space as CLIP learns its logit scale: a gradient step changes it by a
    share of itself, so it reaches the scale of the learned scores from any start within a training run."""

    def __init__(self, initial_weight: float) -> None:
        super().__init__()
        self.log_weight = nn.Parameter(torch.tensor(math.log(initial_weight)))

    @property
    def weight(self) -> torch.Tensor:
        """w = exp(log_weight), a scalar tensor."""
        return self.log_weight.exp()

    @staticmethod
    def item_vectors(text_vectors: torch.Tensor) -> torch.Tensor:
        """[num_items + 1, D]: the L2-normalised text vectors; row 0 (padding) is zero."""
        vectors = F.normalize(text_vectors, dim=-1)
        return vectors * (torch.arange(len(vectors), device=vectors.device) > 0).unsqueeze(1)

    @staticmethod
    def user_vectors(text_vectors: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """[B, L, D]: at each position of `recent` [B, L] (left-padded item indices, 0 = padding), the
        L2-normalised mean of the item vectors of the items up to it (zero before the first one): causal, as the
        interest vector at that position is."""
        rows = ContentScore.item_vectors(text_vectors)[recent]
        return F.normalize(rows.cumsum(dim=1), dim=-1)  # normalising a sum: the mean's direction

    def queries(self, hidden: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """[..., d + D]: interest vectors `hidden` [..., d] with their users' content vectors `users` [..., D]
        times w appended, to score against `item_vectors` appended to the item vectors."""
        return torch.cat([hidden, self.weight * users], dim=-1)

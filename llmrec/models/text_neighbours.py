"""ID parts for items without interactions, borrowed from the warm items whose text is nearest.

A warm item's vector is its projected text plus an ID part learned from its interactions; an item nobody has
interacted with yet (held out of training, or added while serving) has no ID part, so it sits on another scale
than the warm items and rarely reaches a top 10. Its nearest warm items by text, though, often are the same kind
of thing (on Amazon Beauty, frequently the same product in another shade or size) and their ID parts say how the
catalog's users treat such things. A new item therefore takes as its ID part the softmax-weighted mean of the ID
parts of its `k` nearest warm items by cosine similarity of the frozen text vectors:

    id(new) = sum over j in kNN(new) of softmax_j(cos(t_new, t_j) / temperature) * id(j)

A low temperature keeps near-duplicates dominant (a mean of many unrelated ID parts shrinks towards zero and says
little). The neighbours depend on the texts only, so they are found once per new item, and the ID parts are
gathered from the current ID embeddings whenever the table is built. Measured on the cold-item protocol
(docs/findings.md "Cold items").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_SIMILARITIES = 2 ** 25
"""Similarities computed at once (128 MB of float32): the new items are compared with the warm ones in chunks."""


def text_neighbours(text_vectors: torch.Tensor, items: torch.Tensor, candidates: torch.Tensor, k: int,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of `items` [M], its `k` nearest items among `candidates` [N] (bool) by cosine similarity of
    `text_vectors` [N, D], and their softmax weights at `temperature`: (indices [M, k'], weights [M, k']) with
    k' = min(k, number of candidates); rows of weights sum to 1."""
    pool = torch.nonzero(candidates).squeeze(1)
    k = min(k, len(pool))
    normed = F.normalize(text_vectors.float(), dim=-1)
    pool_vectors = normed[pool]
    chunk = max(1, MAX_SIMILARITIES // max(1, len(pool)))
    indices, weights = [], []
    for start in range(0, len(items), chunk):
        top = (normed[items[start:start + chunk]] @ pool_vectors.T).topk(k, dim=1)
        indices.append(pool[top.indices])
        weights.append(torch.softmax(top.values / temperature, dim=1))
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(indices), torch.cat(weights)

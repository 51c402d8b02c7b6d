"""The reranker's network: it rescores each retrieved candidate with what one interest vector cannot hold.

- **Target attention** over the user's longer history (DIN-style): the candidate attends to the history items in
  the interest model's item space, so a candidate close to *some* past items scores high even when the
  averaged interest vector points elsewhere.
- **Text matches** (fixed features, no parameters): the candidate's text embedding against the long-term profile
  embedding, against the closest history item's text, and against the last few items' texts.
- **Context**: user-level context embeddings interacting with the candidate.
- Retrieval's own score, the candidate's popularity, the fusion's long-term weight and the history length.

The output is `retrieval score + correction`; the correction's last layer starts at zero, so an untrained
reranker ranks exactly like retrieval.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.models.base import put_rows
from llmrec.ranking import RankedItems
from llmrec.rerank.candidates import Queries

RECENT_TEXT_ITEMS = 5
"""How many of the latest history items the `recent text` feature averages over."""
SCALAR_FEATURES = 8


class RerankNet(nn.Module):
    """Scores [B, N] for candidates [B, N] of queries [B]."""

    def __init__(self, item_table: torch.Tensor, text_vectors: torch.Tensor, popularity: torch.Tensor,
                 context_sizes: list[int], hidden: int) -> None:
        super().__init__()
        d = item_table.shape[1]
        self.register_buffer("item_table", item_table.float(), persistent=False)
        self.register_buffer("text_vectors", F.normalize(text_vectors.float(), dim=-1), persistent=False)
        self.register_buffer("log_popularity", torch.log1p(popularity.float()) / math.log1p(
            max(1.0, float(popularity.max()))), persistent=False)
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.context = nn.ModuleList(nn.Embedding(size + 1, d, padding_idx=0) for size in context_sizes)
        self.mlp = nn.Sequential(nn.Linear(4 * d + SCALAR_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def put_items(self, items: torch.Tensor, item_rows: torch.Tensor, text_vectors: torch.Tensor) -> None:
        """Set the item-side inputs of `items`; indices past the tables are items added while serving (appended in
        order, with no training interactions: popularity 0)."""
        new = items[items >= len(self.item_table)]
        self.item_table = put_rows(self.item_table, items, item_rows)
        self.text_vectors = put_rows(self.text_vectors, items, F.normalize(text_vectors.float(), dim=-1))
        self.log_popularity = put_rows(self.log_popularity, new, torch.zeros(len(new)))

    def text_features(self, queries: Queries, candidates: RankedItems) -> torch.Tensor:
        """[B, N, 3] parameter-free text matches: candidate vs profile, vs closest history item, vs the mean of
        the last RECENT_TEXT_ITEMS items (cosines of the text embeddings; 0 where missing)."""
        cand = self.text_vectors[candidates.items]  # [B, N, T]
        history = self.text_vectors[queries.histories]  # [B, H, T]; padding rows are zero
        vs_profile = cand @ self._profile_text(queries).unsqueeze(-1)
        similarity = cand @ history.transpose(1, 2)  # [B, N, H]
        similarity = similarity.masked_fill((queries.histories == 0).unsqueeze(1), -1.0)
        closest = similarity.max(dim=-1).values.clamp_min(-1.0)
        recent = F.normalize(history[:, -RECENT_TEXT_ITEMS:].sum(1), dim=-1)  # [B, T]
        vs_recent = cand @ recent.unsqueeze(-1)
        return torch.cat([vs_profile, closest.unsqueeze(-1), vs_recent], dim=-1)

    def _profile_text(self, queries: Queries) -> torch.Tensor:
        """[B, T] the unit profile-text embedding: the last T columns of the long-term input (text sources are
        embedded by the item encoder; `graph+profile` puts the text last), zeros for sources without text."""
        width = self.text_vectors.shape[1]
        if queries.profiles.shape[1] < width:
            return torch.zeros(len(queries.profiles), width, device=queries.profiles.device)
        profile = F.normalize(queries.profiles[:, -width:].float(), dim=-1)
        return profile * queries.has_profile.float().unsqueeze(1)

    def forward(self, queries: Queries, candidates: RankedItems, text: torch.Tensor) -> torch.Tensor:
        """`text` = `text_features(queries, candidates)` (precomputed once for training)."""
        cand = self.item_table[candidates.items]  # [B, N, d]
        history = self.item_table[queries.histories]  # [B, H, d]
        logits = self.query(cand) @ self.key(history).transpose(1, 2) / math.sqrt(cand.shape[-1])
        padding = (queries.histories == 0).unsqueeze(1)
        logits = logits.masked_fill(padding, -torch.inf)
        weights = torch.nan_to_num(logits.softmax(-1))  # an empty history attends to nothing
        pooled = weights @ history  # [B, N, d]
        context = torch.zeros_like(queries.interest)
        for i, embedding in enumerate(self.context):
            context = context + embedding(queries.context[:, i])
        retrieval = candidates.scores.masked_fill(candidates.items == 0, 0.0)
        scalars = torch.stack([
            retrieval,
            self.log_popularity[candidates.items],
            queries.long_weight.unsqueeze(1).expand_as(retrieval),
            torch.log1p(queries.history_lengths.float()).unsqueeze(1).expand_as(retrieval) / 5,
            queries.has_profile.float().unsqueeze(1).expand_as(retrieval),
        ], dim=-1)
        features = torch.cat([cand * pooled, cand * queries.interest.unsqueeze(1), cand * context.unsqueeze(1),
                              pooled, scalars, text], dim=-1)
        scores = retrieval + self.mlp(features).squeeze(-1)
        return scores.masked_fill(candidates.items == 0, -torch.inf)

    def attention(self, candidate: int, history: torch.Tensor) -> torch.Tensor:
        """[H] the target-attention weights of one candidate over one history (0 on padding)."""
        cand = self.item_table[candidate]
        keys = self.key(self.item_table[history])
        logits = (keys @ self.query(cand)) / math.sqrt(cand.shape[-1])
        return torch.nan_to_num(logits.masked_fill(history == 0, -torch.inf).softmax(-1))

"""The interest model's network: an item tower (projected text + learned IDs), a short-term encoder over the
recent items, a long-term input (profile embedding), context embeddings, and the fusion that turns them into one
interest vector in item space, so retrieval is a dot product; optionally the frozen-content score
(`llmrec.models.content_score`), which appends coordinates to both sides of that dot product.

Layers that adapters should reach are plain `nn.Linear`s with stable names (`LORA_TARGETS`), which is what
peft's LoRA attaches to when a trained model is adapted to a new domain.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.config import InterestConfig
from llmrec.models.base import put_rows
from llmrec.models.content_score import ContentScore
from llmrec.models.sasrec import causal_attention_mask
from llmrec.models.text_neighbours import text_neighbours
from llmrec.models.time_features import NUM_GAPS, NUM_HOURS, NUM_WEEKDAYS

LORA_TARGETS = ["text_proj", "long_term.0", "long_term.2", "fusion.gate", "fusion.query", "fusion.key", "fusion.out"]
"""Module names (suffixes, as peft matches them) that LoRA adapters attach to."""


GATE_BIAS = -2.0
"""The gate starts at sigmoid(-2) = 0.12 on the long-term part: a random profile projection would otherwise make
up half of every early interest vector and slow learning down (measured on ML-100K, docs/architecture.md
"Initialisation")."""


def lora_targets(net: nn.Module) -> list[str]:
    """The LORA_TARGETS this network has (the fusion kind decides which of gate/query/key exist)."""
    names = [name for name, _ in net.named_modules()]
    return [t for t in LORA_TARGETS if any(n == t or n.endswith("." + t) for n in names)]


class ItemTower(nn.Module):
    """Item vectors = text_proj(text embedding) + ID part (with `id_delta_bound`, its norm at most that share of
    the text part's). Items seen in training have a learned ID embedding; items without one (never seen in
    training, or added while serving) take, with `neighbours` > 0, the softmax-weighted mean of the ID parts of
    their nearest warm items by text (`llmrec.models.text_neighbours`), and otherwise have their text alone. ID
    dropout hides the ID part of a random share of the items in each training step, so the network also learns
    to rank items that have only their text (as in DropoutNet, Volkovs et al. 2017). The kept ID parts are not
    rescaled: a dropped item looks exactly like a text-only one and a kept item exactly like a warm one at
    inference."""

    def __init__(self, text_vectors: torch.Tensor, seen: torch.Tensor, hidden: int, use_ids: bool,
                 id_dropout: float, id_delta_bound: float | None = None, neighbours: int = 0,
                 neighbour_temperature: float = 0.01) -> None:
        super().__init__()
        self.register_buffer("text_vectors", text_vectors.float(), persistent=False)
        self.register_buffer("seen", seen.float().unsqueeze(1), persistent=False)
        self.text_proj = nn.Linear(text_vectors.shape[1], hidden)
        self.id_embedding = nn.Embedding(len(text_vectors), hidden) if use_ids else None
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=hidden ** -0.5)
        self.id_dropout = id_dropout
        self.id_delta_bound = id_delta_bound
        for name in ("imputed", "neighbour_index", "neighbour_weights", "imputed_slot"):
            self.register_buffer(name, None, persistent=False)
        self.set_neighbours(neighbours, neighbour_temperature)

    def text_table(self) -> torch.Tensor:
        """[num_items + 1, hidden]: the text part alone; row 0 (padding) is zero."""
        vectors = self.text_proj(self.text_vectors)
        return vectors * (torch.arange(len(vectors), device=vectors.device) > 0).unsqueeze(1)

    def table(self, text_table: torch.Tensor | None = None) -> torch.Tensor:
        """[num_items + 1, hidden]: text part + ID part; row 0 (padding) is zero. Pass `text_table` when the
        caller already has it."""
        vectors = self.text_table() if text_table is None else text_table
        if self.id_embedding is not None:
            trained = len(self.id_embedding.weight)
            # the padding row is never `seen`, so it stays zero; items added after training have no ID row
            ids = F.pad(self.id_embedding.weight * self.seen[:trained], (0, 0, 0, len(vectors) - trained))
            if len(self.imputed):
                ids = ids.index_copy(0, self.imputed, self._imputed_ids())
            ids = self._bounded(ids, vectors)
            if self.training and self.id_dropout > 0:
                keep = torch.rand(ids.shape[0], 1, device=ids.device) >= self.id_dropout
                ids = ids * keep
            vectors = vectors + ids
        return vectors

    def rows(self, items: torch.Tensor) -> torch.Tensor:
        """[*items.shape, hidden]: `table()[items]` computed for these items only (a request's history, not the
        whole catalog); for inference, where no ID dropout applies."""
        vectors = self.text_proj(self.text_vectors[items]) * (items > 0).unsqueeze(-1)
        if self.id_embedding is not None:
            # items added after training have no ID row; they are never `seen`, so any row times 0 stands in
            trained = items.clamp(max=len(self.id_embedding.weight) - 1)
            ids = self.id_embedding(trained) * self.seen[items]
            slots = self.imputed_slot[items]
            borrowed = slots >= 0
            if bool(borrowed.any()):  # only the request's items without an ID embedding
                ids = ids.masked_scatter(borrowed.unsqueeze(-1), self._imputed_ids(slots[borrowed]))
            vectors = vectors + self._bounded(ids, vectors)
        return vectors

    def put_texts(self, items: torch.Tensor, text_vectors: torch.Tensor) -> None:
        """Give `items` these text vectors; indices past the table are items added after training (appended
        in order, never `seen`: scored as items never seen in training are). The trained weights do not change."""
        new = items[items >= len(self.text_vectors)]
        self.text_vectors = put_rows(self.text_vectors, items, text_vectors)
        self.seen = put_rows(self.seen, new, torch.zeros(len(new), 1))
        self._find_neighbours(items)

    def set_neighbours(self, neighbours: int, temperature: float) -> None:
        """Borrow the ID parts of items without one from their `neighbours` nearest warm items by text, weighted
        at `temperature` (0 = text part alone): `interest.new_item_neighbours`, changeable on a trained model."""
        self.neighbours = neighbours if self.id_embedding is not None else 0
        self.neighbour_temperature = temperature
        device = self.seen.device
        self.imputed = torch.zeros(0, dtype=torch.long, device=device)  # items whose ID part is borrowed
        self.neighbour_index = torch.zeros(0, 0, dtype=torch.long, device=device)  # [len(imputed), k]
        self.neighbour_weights = torch.zeros(0, 0, device=device)  # [len(imputed), k]
        self.imputed_slot = torch.full((len(self.text_vectors),), -1, device=device)  # item -> row in imputed
        self._find_neighbours(torch.arange(len(self.text_vectors)))

    def _find_neighbours(self, items: torch.Tensor) -> None:
        """Find the text neighbours of those of `items` that have no ID embedding (replacing earlier ones)."""
        items = items.to(self.seen.device)
        items = items[(items > 0) & (self.seen[items, 0] == 0)]
        candidates = self.seen[:, 0] > 0
        if not self.neighbours or not len(items) or not bool(candidates.any()):
            return
        index, weights = text_neighbours(self.text_vectors, items, candidates, self.neighbours,
                                         self.neighbour_temperature)
        kept = ~torch.isin(self.imputed, items)
        self.imputed = torch.cat([self.imputed[kept], items])
        self.neighbour_index = torch.cat([self.neighbour_index[kept].view(-1, index.shape[1]), index])
        self.neighbour_weights = torch.cat([self.neighbour_weights[kept].view(-1, index.shape[1]), weights])
        self.imputed_slot = torch.full((len(self.text_vectors),), -1, device=self.seen.device)
        self.imputed_slot[self.imputed] = torch.arange(len(self.imputed), device=self.seen.device)

    def _imputed_ids(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """[len(slots), hidden]: the ID parts of the `imputed` items at `slots` (all when None), from their
        neighbours' ID embeddings."""
        index, weights = self.neighbour_index, self.neighbour_weights
        if slots is not None:
            index, weights = index[slots], weights[slots]
        return (weights.unsqueeze(-1) * self.id_embedding.weight[index]).sum(dim=1)

    def _bounded(self, ids: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """ID parts scaled, where longer, to `id_delta_bound` times the norm of their items' text parts."""
        if self.id_delta_bound is None:
            return ids
        limit = self.id_delta_bound * text.norm(dim=-1, keepdim=True)
        return ids * (limit / ids.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)


class ShortTermEncoder(nn.Module):
    """Recent item vectors + positions (+ time-gap buckets, with `time_features`) -> a causal hidden state per
    position."""

    def __init__(self, config: InterestConfig, max_len: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.kind, self.num_heads = config.short_term, config.num_heads
        self.position = nn.Embedding(max_len, d)
        self.gap = _zero_embedding(NUM_GAPS, d) if config.time_features else None
        self.dropout = nn.Dropout(config.dropout)
        if self.kind == "attention":
            layer = nn.TransformerEncoderLayer(d, config.num_heads, dim_feedforward=d, dropout=config.dropout,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, config.num_blocks, enable_nested_tensor=False)
        else:
            self.gru = nn.GRU(d, d, num_layers=config.num_blocks, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, items: torch.Tensor, padding: torch.Tensor, gaps: torch.Tensor | None = None) -> torch.Tensor:
        """items [B, L, d], padding [B, L], gaps [B, L] gap bucket ids -> hidden [B, L, d]."""
        positions = torch.arange(items.shape[1], device=items.device)
        x = items * math.sqrt(items.shape[-1]) + self.position(positions)
        if self.gap is not None and gaps is not None:
            x = x + self.gap(gaps)
        x = self.dropout(x)
        x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        if self.kind == "attention":
            x = self.blocks(x, mask=causal_attention_mask(padding, self.num_heads))
        else:
            x, _ = self.gru(x)
        return self.norm(x)


class Fusion(nn.Module):
    """Combines short-term [B, L, d], long-term [B, d] and context [B, L, d] into interest [B, L, d], and
    reports the weight the long-term part got at each position (0 where the profile may not be used)."""

    def __init__(self, config: InterestConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.kind, self.sum_weight = config.fusion, config.sum_weight
        if self.kind == "gate":
            self.gate = nn.Linear(3 * d, 1)
            nn.init.constant_(self.gate.bias, GATE_BIAS)
        elif self.kind == "attention":
            self.query = nn.Linear(d, d)
            self.key = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def parts(self, short: torch.Tensor, long: torch.Tensor, context: torch.Tensor,
              has_long: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted short-term, long-term and context parts [B, L, 3, d] (their sum is what `forward`
        projects) and the long-term weight [B, L]. `has_long` [B, L]: whether the long-term part may be used."""
        long = long.unsqueeze(1).expand_as(short)
        tokens = torch.stack([short, long, context], dim=2)  # [B, L, 3, d]
        if self.kind == "attention":
            logits = (self.query(short).unsqueeze(2) * self.key(tokens)).sum(-1) / math.sqrt(short.shape[-1])
            blocked = torch.zeros_like(logits, dtype=torch.bool)
            blocked[..., 1] = ~has_long
            weights = logits.masked_fill(blocked, -torch.inf).softmax(-1)
        else:
            available = has_long.float().unsqueeze(-1)
            if self.kind == "gate":
                weight = torch.sigmoid(self.gate(torch.cat([short, long, context], dim=-1))) * available
            else:
                weight = self.sum_weight * available
            weights = torch.cat([1 - weight, weight, torch.ones_like(weight)], dim=-1)
        return weights.unsqueeze(-1) * tokens, weights[..., 1]

    def forward(self, short: torch.Tensor, long: torch.Tensor, context: torch.Tensor,
                has_long: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interest [B, L, d] = mixed + out(mixed), mixed = the sum of `parts`; and the long-term weight."""
        parts, long_weight = self.parts(short, long, context, has_long)
        mixed = parts.sum(2)
        return mixed + self.out(mixed), long_weight

    def components(self, short: torch.Tensor, long: torch.Tensor, context: torch.Tensor,
                   has_long: torch.Tensor) -> torch.Tensor:
        """[B, L, 3, d]: each part through the output layer without its bias, so the three components plus
        `out.bias` add up to the interest vector exactly (an item's score splits into their dot products)."""
        parts, _ = self.parts(short, long, context, has_long)
        return parts + parts @ self.out.weight.T


class InterestNet(nn.Module):
    """The whole network; `forward` gives interest vectors [B, L, d] and long-term weights [B, L]."""

    def __init__(self, text_vectors: torch.Tensor, seen: torch.Tensor, profile_dim: int,
                 context_sizes: list[int], config: InterestConfig, max_len: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.items = ItemTower(text_vectors, seen, d, config.use_ids, config.id_dropout, config.id_delta_bound,
                               config.new_item_neighbours, config.new_item_temperature)
        self.short_term = ShortTermEncoder(config, max_len)
        self.long_term = nn.Sequential(nn.Linear(profile_dim, d), nn.GELU(), nn.Linear(d, d))
        self.context = nn.ModuleList(_zero_embedding(size + 1, d) for size in context_sizes)
        self.hour = _zero_embedding(NUM_HOURS, d) if config.time_features else None
        self.weekday = _zero_embedding(NUM_WEEKDAYS, d) if config.time_features else None
        self.fusion = Fusion(config)
        self.content = None if config.content_weight is None else ContentScore(config.content_weight)

    def forward(self, recent: torch.Tensor, profile: torch.Tensor, has_profile: torch.Tensor, context: torch.Tensor,
                times: torch.Tensor | None = None, table: torch.Tensor | None = None, scored: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """recent [B, L] (left-padded item indices), profile [B, P], has_profile [B] (or [B, L] per position),
        context [B, F] category ids (0 = unknown), times [B, L, 3] (gap, hour, weekday) ids of the recent items
        (`llmrec.models.time_features`; None = unknown); `table` = `items.table()` when the caller already has
        it (training does; inference embeds only the recent items). `scored`: the interest vectors as they are
        scored (`scored_queries`), which training asks for inside the forward pass, where a DistributedDataParallel
        wrapper sees every parameter the loss uses (the content weight too)."""
        hidden, weights = self.fusion(*self._inputs(recent, profile, has_profile, context, times, table))
        return (self.scored_queries(hidden, recent) if scored else hidden), weights

    def components(self, recent: torch.Tensor, profile: torch.Tensor, has_profile: torch.Tensor,
                   context: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, 3, d] the short-term, long-term and context components of the interest vectors (see
        `Fusion.components`)."""
        return self.fusion.components(*self._inputs(recent, profile, has_profile, context, times, None))

    def _inputs(self, recent: torch.Tensor, profile: torch.Tensor, has_profile: torch.Tensor, context: torch.Tensor,
                times: torch.Tensor | None, table: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(short-term [B, L, d], long-term [B, d], context [B, L, d], whether long-term may be used [B, L])."""
        if table is None and self.training:
            table = self.items.table()  # ID dropout is drawn over the whole table
        padding = recent == 0
        if self.config.use_recent:
            recent_vectors = self.items.rows(recent) if table is None else table[recent]
            short = self.short_term(recent_vectors, padding, None if times is None else times[..., 0])
        else:
            short = torch.zeros(*recent.shape, self.config.hidden_size, device=recent.device)
        has_long = (has_profile if has_profile.dim() == 2 else has_profile.unsqueeze(1)).expand(recent.shape)
        has_long = has_long & self.config.use_profile
        long = self.long_term(profile)
        ctx = torch.zeros_like(short)
        if self.config.use_context:
            if len(self.context):
                ctx = ctx + sum(emb(context[:, i]) for i, emb in enumerate(self.context)).unsqueeze(1)
            if self.hour is not None and self.weekday is not None and times is not None:
                ctx = ctx + self.hour(times[..., 1]) + self.weekday(times[..., 2])
        return short, long, ctx, has_long

    def scored_items(self, table: torch.Tensor) -> torch.Tensor:
        """Item vectors `table` [N, d] (`items.table()` or its text part) as they are scored: with the
        frozen-content score, their normalised text vectors appended ([N, d + D])."""
        if self.content is None:
            return table
        return torch.cat([table, self.content.item_vectors(self.items.text_vectors)], dim=1)

    def scored_queries(self, hidden: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """Interest vectors as they are scored against `scored_items`: `hidden` [B, L, d] (one per position of
        `recent` [B, L], the left-padded item indices `forward` read) or [B, d] (after the last position); with
        the frozen-content score, w times the users' content vectors appended."""
        if self.content is None:
            return hidden
        users = self.content.user_vectors(self.items.text_vectors, recent)
        return self.content.queries(hidden, users if hidden.dim() == 3 else users[:, -1])


def _zero_embedding(size: int, dim: int) -> nn.Embedding:
    """An embedding whose rows start at zero (id 0 = unknown stays zero): the network starts as the one without
    this input, and training learns what it adds."""
    embedding = nn.Embedding(size, dim, padding_idx=0)
    nn.init.zeros_(embedding.weight)
    return embedding

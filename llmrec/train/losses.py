"""Next-item losses over an item embedding table: full softmax and sampled softmax with logQ correction."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_loss(hidden: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole catalog. hidden [N, d], item_table [num_items + 1, d], targets [N]."""
    logits = hidden @ item_table.T
    logits[:, 0] = -torch.inf  # padding is never a valid next item
    return F.cross_entropy(logits, targets)


def sampled_softmax_loss(
    hidden: torch.Tensor,
    item_table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over [target, shared negatives]; `log_q` [num_items + 1] is the log sampling probability of each
    item, subtracted from its logit (logQ correction) so the estimate stays unbiased for non-uniform sampling.
    Negatives that equal the row's target (accidental hits) are masked out."""
    pos = (hidden * item_table[targets]).sum(-1, keepdim=True)  # [N, 1]
    neg = hidden @ item_table[negatives].T  # [N, S]
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(1)
        neg = neg - log_q[negatives].unsqueeze(0)
    neg = neg.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), -torch.inf)
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))

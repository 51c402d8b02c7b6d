"""History digest: a long history reduced to what a small LLM can read — category shares, a taste shift, and a
few representative items chosen under a token budget."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from llmrec.profiles.facts import CatalogFacts
from llmrec.safety import neutralise_item_text

_RECENCY_WEIGHT = 0.5
_POPULARITY_WEIGHT = 0.5
_REDUNDANCY_PENALTY = 0.6
_SHIFT_MIN_ITEMS = 6
_SHIFT_MIN_CHANGE = 0.1
QUOTED_CHARS = 200
"""Quoted text is cut to this length unless the caller says otherwise (catalog titles arrive already shorter)."""


@dataclass(frozen=True)
class HistoryDigest:
    """The deterministic, structured part of a profile."""

    n_items: int
    """Length of the long-term history the digest summarises."""
    top_categories: list[tuple[str, float]]
    """Most frequent categories with their share of all category mentions, largest first."""
    representative: list[int]
    """Item indices chosen to represent the history, in chronological order."""
    rising: list[str]
    """Categories whose share grew from the first to the second half of the history."""
    fading: list[str]
    """Categories whose share shrank."""


def approx_tokens(text: str) -> int:
    """Rough token count of English text for budgeting (about 3.5 characters per token)."""
    return math.ceil(len(text) / 3.5)


def quote_title(title: str, max_chars: int = QUOTED_CHARS) -> str:
    """A title as quoted data: `shown_title` in double quotes."""
    return f'"{shown_title(title, max_chars)}"'


def shown_title(title: str, max_chars: int = QUOTED_CHARS) -> str:
    """A title as prompts show it: neutralised (`safety.neutralise_item_text`: no markers, no instructions, at
    most `max_chars`), with double quotes made single so quoting it cannot be broken."""
    return neutralise_item_text(title, max_chars).replace('"', "'")


def digest_line(item: int, facts: CatalogFacts) -> str:
    """`"Title" (Category, Category)`: how one item appears in prompts."""
    categories = facts.categories[item][:3]
    suffix = f" ({', '.join(categories)})" if categories else ""
    return quote_title(facts.titles[item]) + suffix


def digest_history(history: np.ndarray, facts: CatalogFacts, max_items: int = 8, token_budget: int = 160,
                   top_categories: int = 5) -> HistoryDigest:
    """Summarise `history` (item indices, oldest first).

    Representative items are picked greedily: an item scores by how typical its categories are for the user
    (relative to the most typical item), how recent and how well known it is, minus a penalty for categories
    already covered by earlier picks; picking stops at
    `max_items` or when the rendered lines would exceed `token_budget`.
    """
    items = [int(i) for i in history if i > 0]
    counts = Counter(c for i in items for c in facts.categories[i])
    total = sum(counts.values()) or 1
    shares = {c: n / total for c, n in counts.items()}
    rising, fading = _taste_shift(items, facts)
    return HistoryDigest(
        n_items=len(items),
        top_categories=[(c, round(shares[c], 3)) for c, _ in counts.most_common(top_categories)],
        representative=_representative(items, facts, shares, max_items, token_budget),
        rising=rising,
        fading=fading,
    )


def _representative(items: list[int], facts: CatalogFacts, shares: dict[str, float], max_items: int,
                    token_budget: int) -> list[int]:
    last_position = {item: position for position, item in enumerate(items)}  # repeats count once, at their last
    n = max(1, len(items) - 1)
    typical = {item: _typicality(item, facts, shares) for item in last_position}
    most_typical = max(typical.values(), default=0.0) or 1.0
    base = {item: typical[item] / most_typical + _RECENCY_WEIGHT * position / n
            + _POPULARITY_WEIGHT * float(facts.popularity[item]) for item, position in last_position.items()}
    chosen: list[int] = []
    covered: Counter[str] = Counter()
    spent = 0
    while base and len(chosen) < max_items:
        best = max(base, key=lambda i: (base[i] - _REDUNDANCY_PENALTY * _overlap(i, facts, covered), -i))
        cost = approx_tokens(digest_line(best, facts)) + 1
        del base[best]
        if spent + cost > token_budget:
            if chosen:
                break
            continue  # one very long title: try the next candidate instead of returning nothing
        chosen.append(best)
        covered.update(facts.categories[best])
        spent += cost
    return sorted(chosen, key=last_position.__getitem__)


def _typicality(item: int, facts: CatalogFacts, shares: dict[str, float]) -> float:
    categories = facts.categories[item]
    return sum(shares.get(c, 0.0) for c in categories) / len(categories) if categories else 0.0


def _overlap(item: int, facts: CatalogFacts, covered: Counter[str]) -> float:
    categories = facts.categories[item]
    return sum(1 for c in categories if covered[c]) / len(categories) if categories else 0.0


def _taste_shift(items: list[int], facts: CatalogFacts) -> tuple[list[str], list[str]]:
    if len(items) < _SHIFT_MIN_ITEMS:
        return [], []
    half = len(items) // 2
    early, late = _shares(items[:half], facts), _shares(items[half:], facts)
    change = {c: late.get(c, 0.0) - early.get(c, 0.0) for c in set(early) | set(late)}
    ordered = sorted(change, key=lambda c: (-change[c], c))
    rising = [c for c in ordered if change[c] >= _SHIFT_MIN_CHANGE][:2]
    fading = [c for c in reversed(ordered) if change[c] <= -_SHIFT_MIN_CHANGE][:2]
    return rising, fading


def _shares(items: list[int], facts: CatalogFacts) -> dict[str, float]:
    counts = Counter(c for i in items for c in facts.categories[i])
    total = sum(counts.values()) or 1
    return {c: n / total for c, n in counts.items()}

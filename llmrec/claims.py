"""The checkable claims of LLM text about the catalog, checked: one checker for profiles and explanations.

A text may name catalog titles, categories, item ids and percentages. Each is a claim about the items the text
is allowed to talk about (a user's history; for an explanation, also the recommended item): a title must be one
of them, a category must belong to one of them, an item id must be one of theirs, and a percentage must be one
of the numbers the text was given. `ClaimChecker.check` returns what the text cites and what it cannot back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.hygiene import TitleMatcher

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_ID_SHAPED = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9]{6,}$")
"""Item ids worth looking for in text: letters and digits, six or more (ASINs); plain numbers are everywhere."""
NUMBER_TOLERANCE = 1.0
"""A quoted percentage may differ from a given number by this many points (rounding)."""


@dataclass(frozen=True)
class ClaimReport:
    """What a text cites (backed claims) and the claims it cannot back, by kind."""

    cited_titles: list[str]
    cited_categories: list[str]
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    """`title`, `category`, `item-id`, `number` -> the claims of that kind the allowed items do not back."""

    @property
    def reason(self) -> str | None:
        """`unsupported-<kind>` for the first kind with an unbacked claim (titles first), None when all hold."""
        return next((f"unsupported-{kind}" for kind, claims in self.unsupported.items() if claims), None)


class ClaimChecker:
    """Finds and checks a text's claims against a catalog (index 0 = padding, as in `CatalogFacts`)."""

    def __init__(self, titles: Sequence[str], categories: Sequence[tuple[str, ...]] = (),
                 item_ids: Sequence[str] = ()) -> None:
        self._facts: CatalogFacts | None = None
        self._version = 0
        self._index(titles, categories, item_ids)

    @classmethod
    def from_facts(cls, facts: CatalogFacts) -> "ClaimChecker":
        """A checker that follows `facts`: items added or changed while serving are checked too."""
        checker = cls(facts.titles, facts.categories, facts.item_ids)
        checker._facts, checker._version = facts, facts.version
        return checker

    @property
    def titles(self) -> list[str]:
        """Every item's title, by item index."""
        self._follow_facts()
        return self._titles

    def categories_named(self, text: str) -> set[str]:
        """Catalog categories `text` names (the last step of a path, whole words, a plural `s` allowed)."""
        self._follow_facts()
        return {c for c, pattern in self._category_patterns.items() if pattern.search(text)}

    def check(self, text: str, items: Iterable[int], numbers: Iterable[float] = ()) -> ClaimReport:
        """The claims of `text` against the item indices it may talk about and the percentages it was given."""
        self._follow_facts()
        allowed = {int(i) for i in items}
        allowed_categories = {c for i in allowed for c in self._categories[i]}
        # words inside a cited title are that title, not claims of their own: a catalog title, category name,
        # id or percentage within a cited title's span is not checked again
        titles, cited = self._matcher.named(text, allowed)
        rest = _cut(text, cited)
        categories = self.categories_named(rest)
        ids = {item_id for item_id, index in self._ids.items() if item_id in rest}
        given = [float(n) for n in numbers]
        quoted = [float(m.group(1)) for m in _PERCENT.finditer(rest)]
        unsupported = {
            "title": sorted(self._titles[i] for i in titles - allowed),
            "category": sorted(categories - allowed_categories),
            "item-id": sorted(i for i in ids if self._ids[i] not in allowed),
            "number": [f"{q:g}%" for q in quoted if not any(abs(q - g) <= NUMBER_TOLERANCE for g in given)],
        }
        return ClaimReport(cited_titles=sorted(self._titles[i] for i in titles & allowed),
                           cited_categories=sorted(categories & allowed_categories), unsupported=unsupported)

    def _index(self, titles: Sequence[str], categories: Sequence[tuple[str, ...]], item_ids: Sequence[str]) -> None:
        self._titles = list(titles)
        self._categories = list(categories) or [()] * len(self._titles)
        self._matcher = TitleMatcher(self._titles)
        names = {c for item in self._categories for c in item}
        self._category_patterns = {c: _category_pattern(c) for c in names}
        self._ids = {item_id: index for index, item_id in enumerate(item_ids) if _ID_SHAPED.match(item_id)}

    def _follow_facts(self) -> None:
        """Index the facts again when they changed since (items added or changed while serving)."""
        if self._facts is not None and self._facts.version != self._version:
            self._version = self._facts.version
            self._index(self._facts.titles, self._facts.categories, self._facts.item_ids)


def _cut(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with these character spans (overlapping ones merged) replaced by a space each."""
    pieces, last = [], 0
    for start, end in sorted(spans):
        if start > last:
            pieces.append(text[last:start])
            pieces.append(" ")
        last = max(last, end)
    return "".join(pieces) + text[last:]


def _category_pattern(category: str) -> re.Pattern[str]:
    name = category.split(" > ")[-1]
    return re.compile(r"\b" + re.escape(name) + r"s?\b", re.IGNORECASE)

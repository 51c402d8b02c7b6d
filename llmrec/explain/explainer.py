"""Explainer: an attribution -> a short LLM explanation, checked for faithfulness, with the attribution's own text
as the fallback."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.claims import ClaimChecker, ClaimReport
from llmrec.explain.attribution import Attribution, attribution_text
from llmrec.explain.grammar import explanation_grammar
from llmrec.llm.base import GenerationParams, LLMBackend
from llmrec.profiles.digest import quote_title, shown_title
from llmrec.profiles.hygiene import clean_output, rejection_reason
from llmrec.profiles.prompt import ChatTemplate
from llmrec.safety import repeats_instruction

MAX_SENTENCES = 2
TITLE_CHARS = 80
"""Titles in prompts are capped like `CatalogFacts` titles."""
PROFILE_CHARS = 200
RETRY_TEMPERATURE = 0.7
"""A retry after a rejected output samples (the first try is greedy, which would give the same text again)."""
UNFAITHFUL = "unfaithful"
REJECTED = "rejected"
INSTRUCTED = "instructed"


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended, as text, with the facts it was written from."""

    item_id: str
    text: str
    source: Literal["llm", "attribution"]
    attribution: Attribution
    cited_titles: list[str]
    """Catalog titles the text names (all in the user's history or the recommended item itself)."""
    cited_categories: list[str] = field(default_factory=list)
    """Catalog categories the text names (all categories of the history items or of the recommended item)."""
    fallback_reason: str | None = None
    """Why the attribution text replaced the LLM's: `unfaithful` (it named a title outside the history),
    `unsupported-category` / `unsupported-item-id` / `unsupported-number` (a category, item id or percentage that
    the history, the item and the given weights do not back; `llmrec.claims`), `rejected` (empty or degenerate
    output) or `instructed` (it repeated or followed an instruction hidden in item text,
    `safety.repeats_instruction`); or, from a serving process (`fallback`), `llm-busy` / `llm-timeout` /
    `llm-stopped` when the LLM could not be asked in time (`llmrec.serving.llm_worker`); None when no fallback
    happened."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExplainerStats:
    """Counters over everything an explainer produced: the numbers behind faithfulness and fallback rates."""

    explanations: int = 0
    llm: int = 0
    retries: int = 0
    """LLM outputs written again after a rejection (each try's reason is in `rejections`)."""
    fallbacks: Counter = field(default_factory=Counter)
    rejections: Counter = field(default_factory=Counter)
    """Every rejected LLM output by reason, retried ones included (`fallbacks` counts only the final ones)."""

    @property
    def faithfulness(self) -> float | None:
        """Share of the LLM outputs that reached the faithfulness check and passed it (None before any)."""
        checked = self.llm + self.fallbacks[UNFAITHFUL]
        return self.llm / checked if checked else None

    @property
    def fallback_rate(self) -> float | None:
        """Share of explanations where the attribution text replaced the LLM's (None before any)."""
        return sum(self.fallbacks.values()) / self.explanations if self.explanations else None

    def to_dict(self) -> dict[str, Any]:
        return {"explanations": self.explanations, "llm": self.llm, "retries": self.retries,
                "fallbacks": dict(self.fallbacks), "rejections": dict(self.rejections),
                "faithfulness": self.faithfulness, "fallback_rate": self.fallback_rate}


def explanation_values(attribution: Attribution, titles: Sequence[str]) -> dict[str, str]:
    """The placeholder values for an attribution: `item`, `because` (one quoted line per history item, with its
    weight) and `profile` (the closest profile sentence, or `none`); every text goes in as quoted data."""
    because = [f"- {quote_title(titles[item], TITLE_CHARS)} ({weight:.0%})"
               for item, _, weight in attribution.history]
    profile = _profile_sentence(attribution)
    return {"item": quote_title(titles[attribution.item], TITLE_CHARS), "because": "\n".join(because) or "none",
            "profile": quote_title(profile, PROFILE_CHARS) if profile else "none"}


class Explainer:
    """Explains recommendations with an LLM backend (None = the attribution text only).

    With `grammar` and a backend that supports it, decoding follows `explanation_grammar` (the sentence starts with
    the item and may cite only the history titles it was shown). LLM output is cleaned, rejected when degenerate
    (`hygiene.rejection_reason`) or when it repeats or follows an instruction hidden in the texts the prompt was
    built from (`safety.repeats_instruction`), then its claims are checked (`llmrec.claims`: titles, categories,
    item ids, percentages). A rejected output is written again, sampled, up to `attempts` tries in all; when every
    try fails, `attribution_text` replaces it and the last reason is counted in `stats.fallbacks`.
    """

    def __init__(self, claims: ClaimChecker, backend: LLMBackend | None, params: GenerationParams,
                 template: ChatTemplate | None = None, max_chars: int = 300, grammar: bool = True,
                 attempts: int = 2) -> None:
        self.claims = claims
        self.backend = backend
        self.params = params
        self.template = template or (ChatTemplate.load("explain", "llm") if backend else None)
        self.max_chars = max_chars
        self.grammar = grammar and bool(getattr(backend, "supports_grammar", False))
        self.attempts = attempts
        self.stats = ExplainerStats()
        self._stats_lock = threading.Lock()  # a serving process explains from its LLM worker and its requests

    @property
    def titles(self) -> list[str]:
        """The catalog's titles by item index (the claim checker's, so items added while serving are in it)."""
        return self.claims.titles

    def explain(self, item_id: str, attribution: Attribution, history: np.ndarray) -> Explanation:
        """The explanation of one recommendation; `history` is the user's item indices the check allows."""
        return self.explain_many([item_id], [attribution], [history])[0]

    def explain_many(self, item_ids: Sequence[str], attributions: Sequence[Attribution],
                     histories: Sequence[np.ndarray]) -> list[Explanation]:
        """Explanations for a batch of recommendations, in order (one `backend.generate` call per try without the
        grammar; one per explanation with it)."""
        if len(item_ids) != len(attributions) or len(item_ids) != len(histories):
            raise ValueError("explain_many needs one item id, attribution and history each")
        tries: list[tuple[str | None, str | None]] = [(None, None)] * len(item_ids)  # (text, rejection)
        pending = list(range(len(item_ids))) if self.backend is not None else []
        for attempt in range(self.attempts):
            if not pending:
                break
            self.stats.retries += len(pending) if attempt else 0
            params = self.params if not attempt else replace(self.params, temperature=RETRY_TEMPERATURE,
                                                             seed=self.params.seed + attempt)
            for i, text in zip(pending, self._generate([attributions[i] for i in pending], params)):
                reason = self._rejection(text, attributions[i], histories[i])
                tries[i] = (text, reason)
                if reason is not None:
                    self.stats.rejections[reason] += 1
            pending = [i for i in pending if tries[i][1] is not None]
        return [self._explanation(item_id, attribution, history, *tried)
                for item_id, attribution, history, tried in zip(item_ids, attributions, histories, tries)]

    def _generate(self, attributions: Sequence[Attribution], params: GenerationParams) -> list[str]:
        """One cleaned LLM text per attribution (with the grammar: one call each, as each has its own)."""
        assert self.backend is not None and self.template is not None
        prompts = [self.template.render(explanation_values(a, self.titles)) for a in attributions]
        if self.grammar:
            generations = [self.backend.generate([prompt], replace(params, grammar=self._grammar(a)))[0]
                           for prompt, a in zip(prompts, attributions)]
        else:
            generations = self.backend.generate(prompts, params)
        return [clean_output(_first_line(g.text), self.max_chars, MAX_SENTENCES) for g in generations]

    def _grammar(self, attribution: Attribution) -> str:
        return explanation_grammar(shown_title(self.titles[attribution.item], TITLE_CHARS),
                                   [shown_title(self.titles[item], TITLE_CHARS) for item, _, _ in attribution.history])

    def _rejection(self, llm_text: str, attribution: Attribution, history: np.ndarray) -> str | None:
        """Why this LLM text cannot be served (see `Explanation.fallback_reason`), None when it can."""
        # naming the titles it was shown is what an explanation should do, so no titles count as echoes
        if rejection_reason(llm_text, []) is not None:
            return REJECTED
        if repeats_instruction(llm_text, self._prompt_texts(attribution)):
            return INSTRUCTED
        claims = self.claims.check(llm_text, _allowed(attribution, history), _weights(attribution))
        return UNFAITHFUL if claims.unsupported["title"] else claims.reason

    def fallback(self, item_id: str, attribution: Attribution, history: np.ndarray, reason: str) -> Explanation:
        """The attribution-text explanation without asking the LLM, counted as a fallback for `reason` (e.g.
        `llm-busy` when a serving process's LLM had no room for it)."""
        self._count(reason, llm=False)
        return self._attribution_explanation(item_id, attribution, history, reason)

    def _explanation(self, item_id: str, attribution: Attribution, history: np.ndarray, llm_text: str | None,
                     reason: str | None) -> Explanation:
        used_llm = llm_text is not None and reason is None
        self._count(reason, used_llm)
        if used_llm:
            claims = self.claims.check(llm_text, _allowed(attribution, history), _weights(attribution))
            return _explanation(item_id, llm_text, "llm", attribution, claims)
        return self._attribution_explanation(item_id, attribution, history, reason)

    def _attribution_explanation(self, item_id: str, attribution: Attribution, history: np.ndarray,
                                 reason: str | None) -> Explanation:
        """The attribution's own text, without a profile sentence that makes a claim the history does not back (a
        title the user never chose, a category none of their items has)."""
        allowed = _allowed(attribution, history)
        text = attribution_text(attribution)
        claims = self.claims.check(text, allowed, _weights(attribution))
        if claims.reason is not None:  # only the profile sentence can: the rest is the attribution's own facts
            text = attribution_text(replace(attribution, profile_sentences=[]))
            claims = self.claims.check(text, allowed, _weights(attribution))
        return _explanation(item_id, text, "attribution", attribution, claims, reason)

    def _count(self, reason: str | None, llm: bool) -> None:
        with self._stats_lock:
            self.stats.explanations += 1
            self.stats.llm += llm
            if reason is not None:
                self.stats.fallbacks[reason] += 1

    def _prompt_texts(self, attribution: Attribution) -> list[str]:
        """The texts `explanation_values` quotes into the prompt, before neutralising."""
        items = [attribution.item] + [item for item, _, _ in attribution.history]
        return [self.titles[i] for i in items] + [_profile_sentence(attribution)]



def _explanation(item_id: str, text: str, source: Literal["llm", "attribution"], attribution: Attribution,
                 claims: ClaimReport, reason: str | None = None) -> Explanation:
    return Explanation(item_id, text, source, attribution, claims.cited_titles, claims.cited_categories, reason)


def _allowed(attribution: Attribution, history: np.ndarray) -> set[int]:
    """The items an explanation may talk about: the user's history and the recommended item."""
    return {int(i) for i in history} | {attribution.item}


def _weights(attribution: Attribution) -> list[float]:
    """The percentages the prompt gave (the history items' attribution weights)."""
    return [100 * weight for _, _, weight in attribution.history]


def _profile_sentence(attribution: Attribution) -> str:
    """The profile sentence closest to the item (empty without one): the one an explanation may use."""
    return attribution.profile_sentences[0][0] if attribution.profile_sentences else ""


def _first_line(text: str) -> str:
    """An explanation is one line: what a small model writes after a line break echoes the prompt."""
    return text.strip().split("\n", 1)[0]

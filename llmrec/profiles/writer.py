"""ProfileWriter: long-term history -> natural-language interest profile + structured parts + provenance."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.config import ProfileConfig
from llmrec.llm.base import GenerationParams, LLMBackend
from llmrec.profiles.digest import HistoryDigest, digest_history, quote_title
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.grammar import MAX_TOKENS as GRAMMAR_MAX_TOKENS, profile_grammar, prompt_key
from llmrec.profiles.hygiene import TitleMatcher, clean_output, rejection_reason
from llmrec.profiles.prompt import ChatTemplate, digest_values
from llmrec.profiles.template_writer import TemplateProfileText
from llmrec.safety import repeats_instruction

SHORT_HISTORY = "short-history"
TEMPLATE_MODEL_ID = "template"


@dataclass(frozen=True)
class ProfileRequest:
    """One user's long-term history: item indices (oldest first) and where it was cut from the full sequence."""

    user_id: str
    long_term: np.ndarray
    cutoff: int
    """The long-term part is the user's sequence before this position."""

    @property
    def history_hash(self) -> str:
        return hashlib.sha256(np.asarray(self.long_term, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    """Where a profile came from; (dataset, user, cutoff, prompt_version, model_id) is its store key."""

    dataset: str
    cutoff: int
    prompt_version: str
    model_id: str
    history_hash: str


@dataclass(frozen=True)
class Profile:
    """A user's interest profile: the text, the deterministic structured parts, and its provenance."""

    user_id: str
    text: str
    source: Literal["llm", "template"]
    top_categories: list[tuple[str, float]]
    representative_items: list[str]
    rising: list[str]
    fading: list[str]
    n_long_term: int
    provenance: Provenance
    fallback_reason: str | None = None
    """Why the template text was used where an LLM profile was wanted (short-history, empty, echo, ...)."""
    ungrounded_titles: list[str] = field(default_factory=list)
    """Catalog titles the text names that are not in the user's long-term history."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        values = dict(data)
        values["provenance"] = Provenance(**values["provenance"])
        values["top_categories"] = [tuple(pair) for pair in values["top_categories"]]
        return cls(**values)


@dataclass(frozen=True)
class Candidate:
    """One cleaned LLM answer and why it was rejected (None = usable)."""

    text: str
    reason: str | None


@dataclass
class WriterStats:
    """Counters over everything a writer produced: the numbers behind fallback and grounding rates."""

    profiles: int = 0
    llm: int = 0
    fallbacks: Counter = field(default_factory=Counter)
    retries: int = 0
    ungrounded: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    llm_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["fallbacks"] = dict(self.fallbacks)
        return values


class ProfileWriter:
    """Writes profiles with an LLM backend (None = template profiles only).

    Users whose long-term history is shorter than `config.min_long_term` get the template profile. LLM output is
    cleaned and checked (`hygiene.rejection_reason`; `instructed`: it repeats or follows an instruction hidden in a
    title, `safety.repeats_instruction`; `duplicate`: a text another user already has); a rejected output is retried
    with another seed, up to `config.attempts` tries, then the template profile is used and the reason counted in
    `stats.fallbacks`. With `config.grammar` and a backend that supports it, decoding follows `profile_grammar`.
    """

    def __init__(self, facts: CatalogFacts, dataset: str, config: ProfileConfig,
                 backend: LLMBackend | None = None, params: GenerationParams | None = None) -> None:
        self.facts = facts
        self.dataset = dataset
        self.config = config
        self.backend = backend
        self.params = params or GenerationParams()
        self.template_text = TemplateProfileText()
        self.chat = ChatTemplate.load("profile", config.prompt, config.prompt_version) if backend else None
        self.grammar = config.grammar and bool(getattr(backend, "supports_grammar", False))
        self._matcher: TitleMatcher | None = None
        self._matcher_version = -1
        self.stats = WriterStats()
        self.taken: set[str] = set()
        """LLM texts already given to other users: a text repeated word for word says nothing about this user
        (rejected as `duplicate`). Accepted texts join it; the profile job adds the stored ones."""

    @property
    def model_id(self) -> str:
        return self.backend.model_id if self.backend else TEMPLATE_MODEL_ID

    @property
    def matcher(self) -> TitleMatcher | None:
        """Finds catalog titles in LLM output (None without an LLM); rebuilt when the facts change (items added
        while serving)."""
        if self.backend is None:
            return None
        if self._matcher is None or self._matcher_version != self.facts.version:
            self._matcher, self._matcher_version = TitleMatcher(self.facts.titles), self.facts.version
        return self._matcher

    @property
    def prompt_version(self) -> str:
        """The template's key, `+grammar.vN` when decoding follows the profile grammar."""
        if self.chat is None:
            return self.template_text.key
        return prompt_key(self.chat.key, self.grammar)

    def digest(self, long_term: np.ndarray) -> HistoryDigest:
        return digest_history(long_term, self.facts, self.config.digest_items, self.config.digest_tokens)

    def write(self, requests: Sequence[ProfileRequest]) -> list[Profile]:
        """Profiles for a batch of users, in order."""
        digests = [self.digest(r.long_term) for r in requests]
        llm_texts, reasons = self._llm_texts(digests)
        profiles = []
        for i, (request, digest) in enumerate(zip(requests, digests)):
            text = llm_texts.get(i)
            reason = reasons.get(i) if text is None and self.backend else None
            profile = self._profile(request, digest, text, reason)
            self.stats.profiles += 1
            self.stats.llm += profile.source == "llm"
            self.stats.ungrounded += bool(profile.ungrounded_titles)
            if reason:
                self.stats.fallbacks[reason] += 1
            profiles.append(profile)
        return profiles

    def _llm_texts(self, digests: list[HistoryDigest]) -> tuple[dict[int, str], dict[int, str]]:
        """LLM texts by batch position for the users that get one, and the rejection reason for the others."""
        reasons = {i: SHORT_HISTORY for i, d in enumerate(digests) if d.n_items < self.config.min_long_term}
        if self.backend is None or self.chat is None:
            return {}, reasons
        pending = [i for i in range(len(digests)) if i not in reasons]
        texts: dict[int, str] = {}
        for attempt in range(self.config.attempts):
            if not pending:
                break
            self.stats.retries += len(pending) if attempt else 0
            params = replace(self.params, seed=self.params.seed + attempt)
            candidates = self._generate([digests[i] for i in pending], params)
            rejected = []
            for i, candidate in zip(pending, candidates):
                reason = candidate.reason or ("duplicate" if candidate.text in self.taken else None)
                if reason is None:
                    texts[i] = candidate.text
                    self.taken.add(candidate.text)
                else:
                    reasons[i] = reason
                    rejected.append(i)
            pending = rejected
        return texts, {i: r for i, r in reasons.items() if i not in texts}

    def sample(self, request: ProfileRequest, n: int, params: GenerationParams) -> list[Candidate]:
        """`n` LLM answers for one user (seeds `params.seed` to `params.seed + n - 1`), each cleaned and checked;
        nothing is stored. The material a tuned writer learns from (`llmrec.profiles.tuning`)."""
        digest = self.digest(request.long_term)
        return [self._generate([digest], replace(params, seed=params.seed + k))[0] for k in range(n)]

    def _generate(self, digests: list[HistoryDigest], params: GenerationParams) -> list[Candidate]:
        """One LLM answer per digest, cleaned and checked (`hygiene.rejection_reason`)."""
        assert self.backend is not None and self.chat is not None
        prompts = [self.chat.render(digest_values(d, self.facts)) for d in digests]
        started = time.perf_counter()
        if self.grammar:  # one call each, as each has its own grammar, which also bounds the length
            tokens = max(params.max_tokens, GRAMMAR_MAX_TOKENS)
            generations = [self.backend.generate([prompt], replace(params, grammar=self._grammar(d),
                                                                   max_tokens=tokens))[0]
                           for prompt, d in zip(prompts, digests)]
        else:
            generations = self.backend.generate(prompts, params)
        self.stats.llm_seconds += time.perf_counter() - started
        candidates = []
        for digest, generation in zip(digests, generations):
            self.stats.prompt_tokens += generation.prompt_tokens
            self.stats.output_tokens += generation.output_tokens
            text = clean_output(generation.text, self.config.max_chars, self.config.max_sentences)
            candidates.append(Candidate(text, self.rejection(text, digest)))
        return candidates

    def _grammar(self, digest: HistoryDigest) -> str:
        return profile_grammar([quote_title(self.facts.titles[item]) for item in digest.representative])

    def rejection(self, text: str, digest: HistoryDigest) -> str | None:
        """Why this LLM text is not a usable profile of the user `digest` describes (`hygiene.rejection_reason`,
        or `instructed`: it repeats or follows an instruction hidden in a title), None when it is."""
        assert self.chat is not None
        shown = [self.facts.titles[item] for item in digest.representative]
        reason = rejection_reason(text, shown, self.chat.examples)
        if reason is None and repeats_instruction(text, shown):
            reason = "instructed"
        return reason

    def _profile(self, request: ProfileRequest, digest: HistoryDigest, llm_text: str | None,
                 fallback_reason: str | None) -> Profile:
        text = llm_text or self.template_text.render(digest, self.facts, self.config.max_chars)
        ungrounded: list[str] = []
        if llm_text is not None and self.matcher is not None:
            history = {int(i) for i in request.long_term}
            named, _ = self.matcher.named(llm_text, history)
            ungrounded = sorted(self.facts.titles[i] for i in named - history)
        provenance = Provenance(self.dataset, request.cutoff, self.prompt_version, self.model_id,
                                request.history_hash)
        return Profile(
            user_id=request.user_id, text=text, source="llm" if llm_text else "template",
            top_categories=digest.top_categories,
            representative_items=[self.facts.item_ids[i] for i in digest.representative],
            rising=digest.rising, fading=digest.fading, n_long_term=digest.n_items, provenance=provenance,
            fallback_reason=fallback_reason, ungrounded_titles=ungrounded,
        )

"""Recommender: the online facade over one exported bundle of a trained run — what a product team calls in
production.

    rec = Recommender.load("runs/beauty/bundle")          # or the run folder: served through its bundle
    rec.recommend("A1YJEY40YUW4SE", k=10)                 # retrieve (ChromaDB) -> rerank -> top k
    rec.recommend(history=["B0009RF9DW", "B000FS05VE"])  # an anonymous session
    rec.add_interaction("A1YJEY40YUW4SE", "B004Z40048")   # durable when it returns; the next list changes
    rec.profile("A1YJEY40YUW4SE")                         # interest summary + long/short-term weights
    rec.explain("A1YJEY40YUW4SE", "B004Z40048")           # attribution + grounded LLM explanation

The facade is composed of the bundle's parts (`llmrec.serving.bundle`): model and user feature store, reranker,
split, catalog facts, item vectors, ChromaDB collection and profiles; it reads no raw data and loads the text
encoder only for new text. Retrieval asks the ChromaDB collection of the interest model's item vectors (inner
product) for the top N unseen items; the reranker rescores them. A new interaction is logged (SQLite or
PostgreSQL, synced per commit) before it is acknowledged and changes the user's short-term input at once; the
long-term profile is rewritten every `online.profile_refresh_every` new interactions on a background thread, never
on the request path. The event log is the source of truth: every request starts by applying the events logged
since the last one applied, so processes sharing one log (`llmrec serve --workers N`) each see every event from
their next request on. Everything serving writes goes to the state folder (`online.state_dir`), never into the
bundle.

All LLM work (explanations, profile refreshes, interest summaries) runs on one LLM worker thread
(`llmrec.serving.llm_worker`); an explanation waits for it at most `online.explain_timeout_s`, then falls back to
its attribution text. The facade may be called from many threads at once: reads (recommend, profile, explain)
take no lock; changes to a user's state take one short lock.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from llmrec.claims import ClaimChecker
from llmrec.config import check_k
from llmrec.data.split import PADDING
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import DataError, UnknownIdError
from llmrec.explain import Explainer, Explanation, attribute
from llmrec.explain.attribution import Attribution
from llmrec.index.chroma_index import ItemIndex
from llmrec.llm import GenerationParams
from llmrec.llm.lazy import LazyBackend
from llmrec.models.interest import InterestModel
from llmrec.models.long_term import GRAPH_SOURCES, long_term_vectors, profile_writer_of
from llmrec.online.events import Event, EventStore
from llmrec.online.hybrid import hybrid_list
from llmrec.online.tail import LogTail
from llmrec.online.users import UserBook
from llmrec.profiles.hygiene import split_sentences
from llmrec.profiles.service import ProfileService
from llmrec.profiles.writer import Profile, ProfileRequest
from llmrec.ranking import Exclusion, RankedItems, top_items
from llmrec.rerank.candidates import index_candidates, item_table
from llmrec.serving import health
from llmrec.serving.bundle import Bundle, served_bundle
from llmrec.serving.llm_worker import LLMUnavailableError, LLMWorker, Priority

log = logging.getLogger(__name__)

MODES = ("default", "hybrid")


@dataclass(frozen=True)
class Recommendation:
    """One recommended item; `tag` says which interest put it in a hybrid list (None in the default mode)."""

    item_id: str
    score: float
    text: str
    tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AppliedEvent(NamedTuple):
    """A logged event as the facade applied it: the user's row and how many events of the user it has applied
    (this one included); `user` is None for an event naming an item that is not in the catalog (skipped)."""

    event: Event
    user: int | None
    added: int


class Recommender:
    """Recommend, profile, explain and update for the users of one bundle (see the module docstring)."""

    def __init__(self, bundle: Bundle) -> None:
        """The facade composed of a loaded bundle's parts (`Recommender.load` loads one)."""
        self.bundle = bundle
        self.config = config = bundle.config
        if config.online.torch_threads:
            torch.set_num_threads(config.online.torch_threads)
        self.split = bundle.split
        self.model = bundle.model
        self.table = item_table(self.model)
        self.retrieval_table = self.model.retrieval_table()
        self.reranker = bundle.reranker
        self.index = self._item_index() if config.online.retrieval == "index" else None
        self.users = UserBook(self.split, self.model.features)
        self.events = EventStore(config.online.events or bundle.state.events)
        self._event_tail = LogTail(self.events.events_since, lambda event: event.event_id)
        self._lock = threading.RLock()  # guards changes to users' state; reads take no lock
        self.llm_worker = LLMWorker(config.online.llm_queue)
        """The one thread that runs LLM work: explanations first, profile refreshes and summaries in between."""
        self._background: list[Future] = []
        self._refreshes_owed: set[int] = set()
        """Users whose due profile refresh found the LLM worker full: tried again at their next interaction."""
        self._summaries_queued: set[int] = set()
        self._facts = bundle.facts
        self._texts = bundle.texts
        self._popularity = bundle.popularity
        self._popular = np.argsort(-self._popularity, kind="stable")
        self._profiles = bundle.profile_service()
        self._encoder: ItemEncoder | None = None
        self._encoder_lock = threading.Lock()
        self._explainer: Explainer | None = None
        self._replay_events()

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None,
             adapter: str | Path | None = None) -> "Recommender":
        """The facade over a bundle folder (`llmrec export`), or over a run folder written by `llmrec train` /
        `llmrec run`, served through its bundle (exported first when missing or older than the run's models);
        `overrides` are `section.key=value` strings as on the command line. With `adapter` (a folder, or a name
        under run_dir/adapters/, written by `llmrec finetune`), `path` is the adapter's target run and the
        interest model is the base run's, transferred and adapted (`llmrec.transfer.load_adapter`), merged into
        the weights of the adapter's own bundle."""
        return cls(Bundle.load(served_bundle(path, adapter), overrides))

    # ------------------------------------------------------------------------------------------------ serving

    def recommend(self, user_id: str | None = None, k: int = 10, *, history: Sequence[str] | None = None,
                  context: dict[str, str] | None = None, exclude: Sequence[str] = (),
                  mode: str = "default") -> list[Recommendation]:
        """Top-`k` unseen items for a known user (`user_id`) or an anonymous `history` of item ids (oldest
        first). `context` (e.g. {"device": "mobile"}) replaces the user's usual context; `exclude` lists
        more item ids to leave out; `mode="hybrid"` fills the list from the short-term, long-term and context
        interests in `online.hybrid_mix` shares and tags each item."""
        self.catch_up()
        if (user_id is None) == (history is None):
            raise DataError("pass exactly one of user_id and history")
        check_k(k)
        if mode not in MODES:
            raise DataError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if user_id is not None:
            user = self.users.index(user_id)
            items = self.users.history(user)
        else:
            user, items = -1, np.array([self.split.item_index(i) for i in history or []], dtype=np.int64)
        exclusion = Exclusion([items], [np.array([self.split.item_index(i) for i in exclude], dtype=np.int64)])
        context_ids = self.model.features.context_ids(user, context)[None] if context else None
        if not len(items):
            return self._popular_items(exclusion, k)
        if mode == "hybrid":
            return self._hybrid(user, items, context_ids, exclusion, k)
        return self._ranked(user, items, context_ids, exclusion, k)

    def profile(self, user_id: str) -> dict[str, Any]:
        """What the user likes: the interest summary of their whole known history (text, top categories,
        representative items, provenance; None for a user without interactions) and the weights the model gives
        long- and short-term interest now."""
        self.catch_up()
        user = self.users.index(user_id)
        history = self.users.history(user)
        summary = self._summary(user, str(user_id), history)
        return {"user_id": str(user_id), "history_length": int(len(history)),
                "interest_weights": self._interest_weights(user, history),
                "profile": summary.to_dict() if summary else None}

    def explain(self, user_id: str, item_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Why `item_id` suits the user: the history items and profile sentences behind the score, with weights
        from the model's own item vectors, and a short LLM explanation that may only cite the user's history
        (else the attribution text is used). The LLM gets at most `timeout_s` seconds (default
        `online.explain_timeout_s`); when it is busy or too slow, the attribution text is returned and `degraded`
        says why (`llm-busy`, `llm-timeout`, `llm-stopped`; None when it was not)."""
        self.catch_up()
        user = self.users.index(user_id)
        item = self.split.item_index(item_id)
        history = self.users.history(user)
        summary = self._summary(user, str(user_id), history)
        profile_text = summary.text if summary else ""
        sentences = split_sentences(profile_text)
        sentence_vectors = self.encoder.encode(sentences, "explain-sentences/v1") if sentences else None
        weights = self._interest_weights(user, history)
        attribution = attribute(item, history, self.table.numpy(), self._facts.titles, profile_text,
                                sentence_vectors, self.item_vectors[item], weights["long_term"])
        explanation, degraded = self._explanation(str(item_id), attribution, history, timeout_s)
        return {**explanation.to_dict(), "interest_weights": weights, "degraded": degraded}

    def add_interaction(self, user_id: str, item_id: str, timestamp: float | None = None,
                        context: dict[str, str] | None = None) -> dict[str, Any]:
        """Log an interaction (durably: it is committed before this returns) and use it from the next request
        on. A user never seen before is created. Every `online.profile_refresh_every` new interactions the
        user's profile is rewritten in the background (by the process that logged the event)."""
        self.catch_up()
        self.split.item_index(item_id)  # UnknownIdError before anything is logged
        with self._lock:  # no other thread applies the event between its append and its `catch_up` here
            event = self.events.append(user_id, item_id, timestamp, context)
            applied = next(a for a in self.catch_up() if a.event.event_id == event.event_id)
        user = applied.user
        every = self.config.online.profile_refresh_every
        due = bool(every) and (applied.added % every == 0 or user in self._refreshes_owed)
        refresh = due and self._schedule_refresh(user, event.user_id)
        return {"event_id": event.event_id, "user_id": event.user_id,
                "history_length": int(len(self.users.history(user))), "profile_refresh": refresh}

    def health(self) -> dict[str, Any]:
        """What is served, and whether its parts work without waiting for any of them: `components` holds the
        ChromaDB index, the LLM worker and the event store, each `ok`, `degraded` (with a `detail`) or
        `disabled`; `status` is `degraded` when any component is."""
        self.catch_up()
        components = {"index": self._index_health(), "llm": self._llm_health(),
                      "events": health.probe("events", lambda: {"count": self.events.count()})}
        return {"status": health.overall(components), "components": components, "items": self.split.num_items,
                "users": len(self.users), "model": InterestModel.name, "reranker": self.reranker is not None,
                "retrieval": "index" if self.index is not None else "exact",
                "index": self.index.location if self.index is not None else None}

    def save(self) -> Path:
        """Finish pending profile refreshes and return the state folder: events and profiles are already on disk
        there, so `Recommender.load` of the same bundle (and state folder) continues from here."""
        self.wait_for_refreshes()
        return self.bundle.state.folder

    def wait_for_refreshes(self) -> None:
        """Block until the background profile refreshes and summaries queued so far are done (raising the error
        of one that failed)."""
        with self._lock:
            pending = list(self._background)
        for future in pending:
            future.result()

    def close(self) -> None:
        """Finish the queued LLM work, stop the LLM worker, free the LLM and close the event log."""
        self.llm_worker.close()
        self.events.close()
        self.profiles.release_llm()
        if self._explainer is not None and self._explainer.backend is not None:
            self._explainer.backend.close()

    # ------------------------------------------------------------------------------------------------ internals

    @property
    def dataset_name(self) -> str:
        """The served dataset's name (the key of its profile stores)."""
        return self.split.dataset

    @property
    def profiles(self) -> ProfileService:
        """The profile writer and stores (interest summaries and long-term model inputs), in the state folder."""
        return self._profiles

    @property
    def encoder(self) -> ItemEncoder:
        """The text encoder, loaded on first use: only text the bundle does not hold needs it (profile sentences,
        rewritten profiles)."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = ItemEncoder(self.config.encoder)
            return self._encoder

    @property
    def item_vectors(self) -> np.ndarray:
        """The catalog's text vectors ([items + 1, dim], row 0 padding)."""
        return self.bundle.item_vectors

    @property
    def explainer(self) -> Explainer:
        """The explanation writer: the configured LLM (`online.explain_with_llm`; loaded by its first explanation,
        on the LLM worker), else attribution text."""
        with self._lock:
            if self._explainer is None:
                backend = LazyBackend(self.config.llm) if self.config.online.explain_with_llm else None
                params = GenerationParams(max_tokens=60, temperature=0.0, seed=self.config.seed)  # greedy read best
                self._explainer = Explainer(ClaimChecker.from_facts(self._facts), backend, params,
                                            grammar=self.config.online.explain_grammar,
                                            attempts=self.config.online.explain_attempts)
            return self._explainer

    def _explanation(self, item_id: str, attribution: Attribution, history: np.ndarray,
                     timeout_s: float | None) -> tuple[Explanation, str | None]:
        """(the explanation, why it is degraded or None): the LLM's via the worker, waiting at most `timeout_s`
        (default `online.explain_timeout_s`), else the attribution text."""
        explainer = self.explainer
        if explainer.backend is None:
            return explainer.explain(item_id, attribution, history), None
        wait = self.config.online.explain_timeout_s if timeout_s is None else timeout_s
        try:
            return self.llm_worker.call(partial(explainer.explain, item_id, attribution, history), wait), None
        except LLMUnavailableError as exc:
            return explainer.fallback(item_id, attribution, history, exc.reason), exc.reason

    def _index_health(self) -> dict[str, Any]:
        if self.index is None:
            return health.disabled("online.retrieval is exact")
        return health.probe("index", lambda: {"items": self.index.count()})

    def _llm_health(self) -> dict[str, Any]:
        state = self.llm_worker.status()
        writers = {self.config.profile.writer, profile_writer_of(self._profile_source, self.config.profile.writer)}
        if state["status"] == health.OK and not self.config.online.explain_with_llm and "llm" not in writers:
            return health.disabled("online.explain_with_llm is false and no profile writer uses the LLM")
        return state

    def _ranked(self, user: int, items: np.ndarray, context: np.ndarray | None, exclusion: Exclusion,
                k: int) -> list[Recommendation]:
        """Retrieval's top N (N = `rerank.candidates`, at least k) reranked, or retrieval's top k alone."""
        users = np.array([user])
        if self.reranker is not None:
            queries = self.reranker.describe(users, [items], context)
            candidates = self._candidates(queries.interest, exclusion, max(k, self.config.rerank.candidates))
            candidates = RankedItems(candidates.items, self.reranker.rerank(queries, candidates))
        else:
            interest, _ = self.model.interest(users, [items], context)
            candidates = self._candidates(interest, exclusion, k)
        top = candidates.scores[0].topk(min(k, candidates.scores.shape[1]))
        chosen = candidates.items[0, top.indices]
        return [self._recommendation(int(item), float(score))
                for item, score in zip(chosen.tolist(), top.values.tolist()) if item != PADDING]

    def _candidates(self, interest: torch.Tensor, exclusion: Exclusion, n: int) -> RankedItems:
        """The `n` best items for the interest vectors that `exclusion` allows: exact, or from the ChromaDB index."""
        queries = self.model.retrieval_queries(interest)
        if self.index is None:
            return top_items(queries @ self.retrieval_table.T, exclusion, n)
        return index_candidates(self.index, queries, exclusion, n, self.split)

    def _hybrid(self, user: int, items: np.ndarray, context: np.ndarray | None, exclusion: Exclusion,
                k: int) -> list[Recommendation]:
        components = self.model.components(np.array([user]), [items], context)[0]
        excluded = exclusion.mask(len(self.table))[0]
        return [self._recommendation(t.item, t.score, t.tag)
                for t in hybrid_list(components, self.table, excluded, self.config.online.hybrid_mix, k)]

    def _popular_items(self, exclusion: Exclusion, k: int) -> list[Recommendation]:
        """The cold-start answer for an empty history: the most popular items in training."""
        top = top_items(torch.as_tensor(self._popularity, dtype=torch.float32)[None], exclusion, k)
        return [self._recommendation(item, score, "popular")
                for item, score in zip(top.items[0].tolist(), top.scores[0].tolist()) if item != PADDING]

    def _recommendation(self, item: int, score: float, tag: str | None = None) -> Recommendation:
        return Recommendation(self.split.item_id(item), score, self._texts[item], tag)

    def _interest_weights(self, user: int, history: np.ndarray) -> dict[str, float]:
        """The fusion's weights for this user now: long-term (profile) vs short-term (recent items)."""
        if not len(history):
            return {"long_term": 0.0, "short_term": 1.0}
        _, long_weight = self.model.interest(np.array([user]), [history])
        value = float(long_weight[0])
        return {"long_term": value, "short_term": 1.0 - value}

    @property
    def _profile_source(self) -> str:
        return self.config.interest.profile_source or self.config.profile.writer

    def _profile_service(self) -> ProfileService | None:
        """The profile writer and store of the texts the model reads (None for sources without text)."""
        writer = profile_writer_of(self._profile_source, self.config.profile.writer)
        if writer is None:
            return None
        service = self.profiles
        return service if writer == service.config.profile.writer else service.with_writer(writer)

    def _stored_profile(self, user_id: str) -> Profile | None:
        """The user's latest stored profile from the writer the model reads."""
        service = self._profile_service()
        if service is None:
            return None
        return service.store.get(self.dataset_name, user_id, service.prompt_version, service.model_id)

    def _summary(self, user: int, user_id: str, history: np.ndarray) -> Profile | None:
        """The user's interest summary without waiting for the LLM: the stored one of this history; else the
        latest stored one (or, for a user without one, the template summary) while the LLM writes the new one in
        the background."""
        if not len(history):
            return None
        service = self.profiles
        request = service.summary_request(user_id, history)
        stored = service.stored_summary(request)
        if stored is not None and stored.provenance.history_hash == request.history_hash:
            return stored
        if service.config.profile.writer == "template":
            return service.summary(user_id, history)
        with self._lock:
            queue = user not in self._summaries_queued
            self._summaries_queued.add(user)
        if queue and not self._in_background(partial(self._write_summary, user, user_id, history)):
            with self._lock:
                self._summaries_queued.discard(user)  # asked again at the next read
        return stored or service.with_writer("template").summary(user_id, history)

    def _in_background(self, job: Callable[[], None]) -> bool:
        """Queue a background job on the LLM worker; False when its queue is full (or it has stopped)."""
        try:
            future = self.llm_worker.submit(job, Priority.BACKGROUND)
        except LLMUnavailableError as exc:
            log.warning("background LLM job not queued: %s", exc)
            return False
        with self._lock:
            self._background = [f for f in self._background if not f.done()] + [future]
        return True

    def _write_summary(self, user: int, user_id: str, history: np.ndarray) -> None:
        """Write (and store) the user's interest summary with the LLM; a background job."""
        try:
            self.profiles.summary(user_id, history)
        except Exception:  # a background job: log it, the user keeps the previous summary
            log.exception("summary failed for user %s", user_id)
            raise
        finally:
            with self._lock:
                self._summaries_queued.discard(user)

    def _schedule_refresh(self, user: int, user_id: str) -> bool:
        """Queue a rewrite of the user's profile (one worker, in order: a later one reads a newer history); False
        when the worker has no room, and this process owes the user the refresh at their next interaction."""
        queued = self._in_background(partial(self._refresh_profile, user, user_id))
        with self._lock:
            (self._refreshes_owed.discard if queued else self._refreshes_owed.add)(user)
        return queued

    def _refresh_profile(self, user: int, user_id: str) -> None:
        """Rewrite one user's long-term profile from their current history, swap its vector in, and rewrite the
        interest summary."""
        try:
            history = self.users.history(user)
            cutoff = max(0, len(history) - self.config.profile.recent_items)
            service = self._profile_service()
            profile = None
            if service is not None and cutoff:
                (profile,) = service.writer.write([ProfileRequest(user_id, history[:cutoff], cutoff)])
                service.store.put([profile])
            self._set_long_term(user, history[:cutoff], profile)
            self._write_summary(user, user_id, history)
        except Exception:  # a background job: log it, the user keeps the previous profile
            log.exception("profile refresh failed for user %s", user_id)
            raise

    def _set_long_term(self, user: int, long_term: np.ndarray, profile: Profile | None) -> None:
        """Swap in the user's long-term vector (the graph folds the user in from the long-term items); an empty
        long-term part has none."""
        vector = None
        if len(long_term):
            service = self._profile_service()
            source = self._profile_source
            graph = self.bundle.long_term_graph if source in GRAPH_SOURCES else None
            vector = long_term_vectors(source, [long_term], np.array([-1]), [profile.text] if profile else None,
                                       service.prompt_version if service else None, self.encoder,
                                       self.item_vectors, graph)[0]
        with self._lock:
            self.model.features.set_long_term(user, vector)

    def catch_up(self) -> list[AppliedEvent]:
        """Apply the events logged since the last one this facade applied, by this process or any other that
        shares the event log; every request starts with it, and loading replays the whole log through it."""
        with self._lock:
            applied = self._event_tail.apply_new(self._apply_event)
        skipped = sum(a.user is None for a in applied)
        if skipped:
            log.warning("%d logged events name items that are not in the catalog; skipped", skipped)
        return applied

    def _apply_event(self, event: Event) -> AppliedEvent:
        try:
            item = self.split.item_index(event.item_id)
        except UnknownIdError:
            return AppliedEvent(event, None, 0)
        user, added = self.users.add(event.user_id, item, event.timestamp)
        return AppliedEvent(event, user, added)

    def _replay_events(self) -> None:
        """Apply the logged events of earlier sessions, then each such user's latest long-term vector: the stored
        refreshed profile, or, for sources without text, the long-term part of the current history once the
        user has had a refresh's worth of events."""
        added: dict[int, tuple[str, int]] = {}
        for applied in self.catch_up():
            if applied.user is not None:
                added[applied.user] = (applied.event.user_id, applied.added)
        every = self.config.online.profile_refresh_every
        for user, (user_id, count) in added.items():
            history = self.users.history(user)
            if self._profile_service() is not None:
                stored = self._stored_profile(user_id)
                if stored is not None and stored.provenance.cutoff > 0:
                    self._set_long_term(user, history[:stored.provenance.cutoff], stored)
            elif every and count >= every:
                self._set_long_term(user, history[:max(0, len(history) - self.config.profile.recent_items)], None)

    def _item_index(self) -> ItemIndex:
        """The ChromaDB collection of the interest model's retrieval vectors (inner product; with the new-item
        boost coordinate): the bundle's, rebuilt in the state folder when it does not hold exactly these."""
        return self.bundle.item_index(self.retrieval_table)

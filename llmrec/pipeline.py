"""Recommender: the online facade over one exported bundle of a trained run — what a product team calls in
production.

    rec = Recommender.load("runs/beauty/bundle")          # or the run folder: served through its bundle
    rec.recommend("A1YJEY40YUW4SE", k=10)                 # retrieve (ChromaDB) -> rerank -> top k
    rec.recommend(history=["B0009RF9DW", "B000FS05VE"])  # an anonymous session
    rec.recommend(interests="gentle skin care for dry skin")  # a user known only by their words
    rec.add_interaction("A1YJEY40YUW4SE", "B004Z40048")   # durable when it returns; the next list changes
    rec.profile("A1YJEY40YUW4SE")                         # interest summary + long/short-term weights
    rec.explain("A1YJEY40YUW4SE", "B004Z40048")           # attribution + grounded LLM explanation
    rec.add_item("NEW-1", "Rose Night Cream. Categories: Skin Care", title="Rose Night Cream")  # at once

The facade is composed of the bundle's parts (`llmrec.serving.bundle`): model and user feature store, reranker,
split, catalog facts, item vectors, ChromaDB collection and profiles; it reads no raw data and loads the text
encoder only for new text. Retrieval asks the ChromaDB collection of the interest model's item vectors (inner
product) for the top N unseen items; the reranker rescores them. A new interaction is logged (SQLite or
PostgreSQL, synced per commit) before it is acknowledged and changes the user's short-term input at once; the
long-term profile is rewritten every `online.profile_refresh_every` new interactions on a background thread, never
on the request path. Items added, updated or deleted while serving are logged the same way (the item log,
`llmrec.online.item_log`) and recommendable (or gone) from the next request, without retraining: a new item is
embedded by the text encoder and scored from its text, like an item never seen in training. The two logs are the
source of truth: every request starts by applying the item changes, then the events, logged since the last ones
applied, so processes sharing the logs (`llmrec serve --workers N`) each see every change from their next request
on. Everything serving writes goes to the state folder (`online.state_dir`), never into the bundle.

All LLM work (explanations, profile refreshes, interest summaries) runs on one LLM worker thread
(`llmrec.serving.llm_worker`); an explanation waits for it at most `online.explain_timeout_s`, then falls back to
its attribution text. The facade may be called from many threads at once: reads (recommend, profile, explain)
take no lock; changes to a user's state take one short lock.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from llmrec.claims import ClaimChecker
from llmrec.config import check_k
from llmrec.data.split import PADDING
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError, ConflictError, DataError, UnknownIdError
from llmrec.explain import Explainer, Explanation, attribute
from llmrec.explain.attribution import Attribution
from llmrec.index.chroma_index import ItemIndex
from llmrec.llm import GenerationParams
from llmrec.llm.lazy import LazyBackend
from llmrec.models.interest import InterestModel
from llmrec.models.long_term import GRAPH_SOURCES, long_term_vectors, profile_writer_of
from llmrec.online.events import Event, EventStore, clean_id
from llmrec.online.hybrid import hybrid_list
from llmrec.online.item_log import Action, ItemChange, ItemLog
from llmrec.online.items import ItemBook
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
from llmrec.text import clean_input_text

log = logging.getLogger(__name__)

MODES = ("default", "hybrid")
ITEM_TEXT_KEY = "served-item/v1"
"""The encoder cache key of the texts of items added while serving (they come rendered, like catalog texts)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item; `tag` says which interest put it in a hybrid list (None in the default mode)."""

    item_id: str
    score: float
    text: str
    tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Its fields (flat values: no deep copy, which `dataclasses.asdict` makes at some microseconds each)."""
        return dict(vars(self))


class AppliedEvent(NamedTuple):
    """A logged event as the facade applied it: the user's row and how many events of the user it has applied
    (this one included); `user` is None for an event naming an item that is not known (skipped)."""

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
        self.index: ItemIndex | None = None
        self.items = ItemBook([str(i) for i in self.split.item_ids], bundle.texts[1:], bundle.item_vectors)
        """The catalog's items and those added while serving."""
        self.item_log = ItemLog(config.online.items or bundle.state.items, config.online.max_text_chars)
        self._item_tail = LogTail(self.item_log.items_since, lambda change: change.log_id, self.item_log.db.version)
        self.users = UserBook(self.split, self.model.features)
        self.events = EventStore(config.online.events or bundle.state.events)
        self._event_tail = LogTail(self.events.events_since, lambda event: event.event_id, self.events.db.version)
        self._lock = threading.RLock()  # guards changes to users' state; reads take no lock
        self.llm_worker = LLMWorker(config.online.llm_queue, nice=config.online.llm_nice)
        """The one thread that runs LLM work: explanations first, profile refreshes and summaries in between."""
        self._background: list[Future] = []
        self._refreshes_owed: set[int] = set()
        """Users whose due profile refresh found the LLM worker full: tried again at their next interaction."""
        self._summaries_queued: set[int] = set()
        self._facts = bundle.facts
        self._popularity = bundle.popularity
        self._profiles = bundle.profile_service()
        self._encoder: ItemEncoder | None = None
        self._encoder_lock = threading.Lock()
        self._explainer: Explainer | None = None
        self._catch_up_items()  # the items of earlier sessions before the index, which then holds them too
        if config.online.retrieval == "index":
            self.index = bundle.item_index(self.retrieval_table, [self.items.item_id(i) for i in self.items.added])
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
                  interests: str | None = None, context: dict[str, str] | None = None, exclude: Sequence[str] = (),
                  mode: str = "default") -> list[Recommendation]:
        """Top-`k` unseen items for a known user (`user_id`), or for an anonymous user from a `history` of item
        ids (oldest first) and/or `interests` stated in words ("I like dark Scandinavian crime novels": the
        model's long-term input, see `stated_interest_vectors`). `context` (e.g. {"device": "mobile"}) replaces
        the user's usual context; `exclude` lists more item ids to leave out; `mode="hybrid"` fills the list from
        the short-term, long-term and context interests in `online.hybrid_mix` shares and tags each item. Deleted
        items are never recommended."""
        self.catch_up()
        if (user_id is None) == (history is None and interests is None):
            raise DataError("pass exactly one of user_id and history (or interests, with or without a history)")
        check_k(k)
        if mode not in MODES:
            raise DataError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if user_id is not None:
            user = self.users.index(user_id)
            items = self.users.history(user)
        else:
            user, items = -1, np.array([self.items.item_index(i) for i in history or []], dtype=np.int64)
        profiles = self.stated_interest_vectors([interests]) if interests is not None else None
        extra = np.concatenate([[self.items.item_index(i) for i in exclude], self.items.deleted]).astype(np.int64)
        exclusion = Exclusion([items], [extra])
        context_ids = self.model.features.context_ids(user, context)[None] if context else None
        if not len(items) and profiles is None:
            return self._popular_items(exclusion, k)
        if mode == "hybrid":
            return self._hybrid(user, items, context_ids, exclusion, k, profiles)
        return self._ranked(user, items, context_ids, exclusion, k, profiles)

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
        item = self.items.item_index(item_id)
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
        user's profile is rewritten in the background (by the process that logged the event). A deleted item may
        not be named (DeletedItemError)."""
        self.catch_up()
        self.items.live_index(item_id)  # UnknownIdError before anything is logged
        with self._lock:  # no other thread applies the event between its append and its `catch_up` here
            event = self.events.append(user_id, item_id, timestamp, context)
            applied = next(a for a in self.catch_up() if a.event.event_id == event.event_id)
        user = applied.user
        every = self.config.online.profile_refresh_every
        due = bool(every) and (applied.added % every == 0 or user in self._refreshes_owed)
        refresh = due and self._schedule_refresh(user, event.user_id)
        return {"event_id": event.event_id, "user_id": event.user_id,
                "history_length": int(len(self.users.history(user))), "profile_refresh": refresh}

    # ------------------------------------------------------------------------------------------------ items

    def add_item(self, item_id: str, text: str, *, title: str | None = None,
                 categories: Sequence[str] = ()) -> dict[str, Any]:
        """Add an item while serving; it is recommendable from the next request on (by every process sharing the
        item log), without retraining: scored from its text alone, like an item never seen in training, plus the
        model's new-item offset and `interest.new_item_boost`. `text` is the item's text as the catalog has it,
        which the text encoder embeds (for a MovieLens run, e.g. `Heat (1995). Genres: Action, Crime`); `title`
        (default: the text) and `categories` are what profiles and explanations may say about it. Logged durably
        before it returns. ConflictError for an id already taken (by a deleted item too: ids are not reused);
        DataError for an empty or over-long text (`online.max_text_chars`), a bad id or bad categories."""
        return self._change_item("add", item_id, text, title, categories)

    def update_item(self, item_id: str, text: str, *, title: str | None = None,
                    categories: Sequence[str] = ()) -> dict[str, Any]:
        """Replace the text, title and categories of an item added while serving (embedded and indexed again at
        once). UnknownIdError for an unknown or deleted item, ConflictError for a catalog item (change the
        dataset, retrain and export a new bundle)."""
        return self._change_item("update", item_id, text, title, categories)

    def delete_item(self, item_id: str) -> dict[str, Any]:
        """Never recommend an item again (a catalog item or one added online). It keeps its id and index, so
        histories naming it stay valid; new events naming it are refused (DeletedItemError)."""
        return self._change_item("delete", item_id)

    def stated_interest_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), P] the interest model's long-term input for interests stated in words (`recommend(
        interests=...)`): each text cleaned (DataError when empty or over `online.max_text_chars`) and embedded
        as a profile text is, under the profile writer's prompt version. The text is only embedded, never given
        to an LLM, so instructions in it have no effect. ConfigError when the model reads no profile text
        (`interest.profile_source` mean-items or graph)."""
        if self._profile_service() is None:
            raise ConfigError(f"stated interests need a model that reads profile text; this run's "
                              f"interest.profile_source is {self._profile_source!r} (llm, template and "
                              "graph+profile read one)")
        cleaned = [clean_input_text(t, "interests", self.config.online.max_text_chars) for t in texts]
        no_items = [np.zeros(0, dtype=np.int64)] * len(cleaned)
        return torch.from_numpy(self._long_term_inputs(no_items, cleaned))

    # ------------------------------------------------------------------------------------------------ service

    def health(self) -> dict[str, Any]:
        """What is served, and whether its parts work without waiting for any of them: `components` holds the
        ChromaDB index, the LLM worker, the event store and the item log, each `ok`, `degraded` (with a
        `detail`) or `disabled`; `status` is `degraded` when any component is. `items` counts the items that
        can be recommended (the catalog's and the added ones, less the deleted)."""
        self.catch_up()
        components = {"index": self._index_health(), "llm": self._llm_health(),
                      "events": health.probe("events", lambda: {"count": self.events.count()}),
                      "items": health.probe("items", lambda: {"changes": self.item_log.count()})}
        live = len(self.items) - 1 - len(self.items.deleted)
        return {"status": health.overall(components), "components": components, "items": live,
                "users": len(self.users), "model": InterestModel.name, "reranker": self.reranker is not None,
                "retrieval": "index" if self.index is not None else "exact",
                "index": self.index.location if self.index is not None else None}

    def save(self) -> Path:
        """Finish pending profile refreshes and return the state folder: events, item changes and profiles are
        already on disk there, so `Recommender.load` of the same bundle (and state folder) continues from here."""
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
        """Finish the queued LLM work, stop the LLM worker, free the LLM and close the event and item logs."""
        self.llm_worker.close()
        self.events.close()
        self.item_log.close()
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
        rewritten profiles, stated interests, items added while serving)."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = ItemEncoder(self.config.encoder)
            return self._encoder

    @property
    def item_vectors(self) -> np.ndarray:
        """The text vectors of the catalog and the items added while serving ([items + 1, dim], row 0 padding)."""
        return self.items.vectors

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
                k: int, profiles: torch.Tensor | None = None) -> list[Recommendation]:
        """Retrieval's top N (N = `rerank.candidates`, at least k) reranked, or retrieval's top k alone."""
        users = np.array([user])
        if self.reranker is not None:
            queries = self.reranker.describe(users, [items], context, profiles)
            n = max(k, self.config.rerank.candidates)
            candidates = self._candidates(queries.interest, [items], exclusion, n)
            candidates = RankedItems(candidates.items, self.reranker.rerank(queries, candidates))
        else:
            interest, _ = self.model.interest(users, [items], context, profiles)
            candidates = self._candidates(interest, [items], exclusion, k)
        top = candidates.scores[0].topk(min(k, candidates.scores.shape[1]))
        chosen = candidates.items[0, top.indices]
        return [self._recommendation(int(item), float(score))
                for item, score in zip(chosen.tolist(), top.values.tolist()) if item != PADDING]

    def _candidates(self, interest: torch.Tensor, histories: Sequence[np.ndarray], exclusion: Exclusion,
                    n: int) -> RankedItems:
        """The `n` best items for the interest vectors after `histories` that `exclusion` allows: exact, or from
        the ChromaDB index."""
        queries = self.model.retrieval_queries(interest, histories)
        if self.index is None:
            return top_items(queries @ self.retrieval_table.T, exclusion, n)
        return index_candidates(self.index, queries, exclusion, n, self.items, len(self.items))

    def _hybrid(self, user: int, items: np.ndarray, context: np.ndarray | None, exclusion: Exclusion,
                k: int, profiles: torch.Tensor | None = None) -> list[Recommendation]:
        components = self.model.components(np.array([user]), [items], context, profiles)[0]
        excluded = exclusion.mask(len(self.table))[0]
        return [self._recommendation(t.item, t.score, t.tag)
                for t in hybrid_list(components, self.table, excluded, self.config.online.hybrid_mix, k)]

    def _popular_items(self, exclusion: Exclusion, k: int) -> list[Recommendation]:
        """The cold-start answer for an empty history: the most popular items in training (never an added one:
        it has no training interactions)."""
        scores = torch.full((1, len(self.items)), -torch.inf)
        scores[0, :len(self._popularity)] = torch.as_tensor(self._popularity, dtype=torch.float32)
        top = top_items(scores, exclusion, k)
        return [self._recommendation(item, score, "popular") for item, score in
                zip(top.items[0].tolist(), top.scores[0].tolist()) if item != PADDING and score > -torch.inf]

    def _recommendation(self, item: int, score: float, tag: str | None = None) -> Recommendation:
        return Recommendation(self.items.item_id(item), score, self.items.texts[item], tag)

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
            vector = self._long_term_inputs([long_term], [profile.text] if profile else None)[0]
        with self._lock:
            self.model.features.set_long_term(user, vector)

    def _long_term_inputs(self, long_terms: Sequence[np.ndarray], texts: Sequence[str] | None) -> np.ndarray:
        """[len(long_terms), P] long-term inputs of users the model was not trained with: folded in from their
        long-term items, with `texts` (profile texts, stated interests) embedded for the sources that read one."""
        service = self._profile_service()
        source = self._profile_source
        graph = self.bundle.long_term_graph if source in GRAPH_SOURCES else None
        return long_term_vectors(source, long_terms, np.full(len(long_terms), -1), texts,
                                 service.prompt_version if service else None, self.encoder, self.item_vectors,
                                 graph)

    def catch_up(self) -> list[AppliedEvent]:
        """Apply the item changes, then the events, logged since the last ones this facade applied, by this
        process or any other that shares the logs; every request starts with it, and loading replays the whole
        logs through it. Returns the events applied."""
        with self._lock:
            self._catch_up_items()
            applied = self._event_tail.apply_new(self._apply_event)
        skipped = sum(a.user is None for a in applied)
        if skipped:
            log.warning("%d logged events name items that are not known; skipped", skipped)
        return applied

    def _apply_event(self, event: Event) -> AppliedEvent:
        try:
            item = self.items.item_index(event.item_id)
        except UnknownIdError:  # maybe an item another process added after this catch-up read the item log
            self._catch_up_items()
            try:
                item = self.items.item_index(event.item_id)
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

    def _change_item(self, action: Action, item_id: str, text: str = "", title: str | None = None,
                     categories: Sequence[str] = ()) -> dict[str, Any]:
        """Check a change against the items, embed its text (before taking the lock), log it (durably) and apply
        it with every change logged before it. ConflictError when another process logged a clashing change
        first (the same new id)."""
        item_id = clean_id(item_id, "item_id")
        self.catch_up()
        self.items.check(action, item_id)  # a clear error before any embedding
        embedded: dict[str, np.ndarray] = {}
        if action != "delete":
            text = clean_input_text(text, "text", self.config.online.max_text_chars)
            embedded[text] = self._encode_item_texts([text])[0]
        with self._lock:  # no other thread applies the change between its append and its catch-up here
            self._catch_up_items()
            self.items.check(action, item_id)
            change = self.item_log.append(action, item_id, text, title, categories)
            skipped = self._item_tail.apply_batch(partial(self._apply_item_changes, embedded=embedded))
        if change.log_id in skipped:
            raise ConflictError(f"item {item_id!r} was changed by another process at the same time; not applied")
        return {"item_id": change.item_id, "action": action, "log_id": change.log_id}

    def _encode_item_texts(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] item texts embedded by the catalog's text encoder."""
        return self.encoder.encode(texts, ITEM_TEXT_KEY)

    def _catch_up_items(self) -> None:
        """Apply the item changes logged since the last one applied (caller holds `_lock`, or is loading)."""
        with self._lock:
            self._item_tail.apply_batch(self._apply_item_changes)

    def _apply_item_changes(self, changes: Sequence[ItemChange],
                            embedded: dict[str, np.ndarray] | None = None) -> set[int]:
        """Apply logged changes in log order: their texts embedded in one pass (`embedded` maps texts already
        embedded to their vectors), the item book and facts, then, once for all the items they add or update,
        the interest model's item rows, the retrieval tables, the reranker and the index. Readers take no lock,
        so the item book grows before the tables that name the new rows. Returns the log ids of the changes the
        items refused (an id another process added first), which are skipped with a warning."""
        if not changes:  # most requests' catch-up
            return set()
        known = dict(embedded or {})
        missing = list(dict.fromkeys(c.text for c in changes if c.action != "delete" and c.text not in known))
        if missing:
            known.update(zip(missing, self._encode_item_texts(missing)))
        blank = np.zeros(self.items.vectors.shape[1], dtype=np.float32)
        changed: set[int] = set()
        skipped: set[int] = set()
        for change in changes:
            try:
                item = self.items.apply(change, known.get(change.text, blank))
            except (ConflictError, UnknownIdError) as exc:
                log.warning("item change %d skipped: %s", change.log_id, exc)
                skipped.add(change.log_id)
                continue
            if change.action != "delete":
                self._facts.put(item, change.item_id, change.title or change.text, change.categories)
                changed.add(item)
        if changed:
            self._put_items(np.array(sorted(changed)))
        return skipped

    def _put_items(self, items: np.ndarray) -> None:
        """Give the model, its tables, the reranker and the index the current text vectors of `items`."""
        text_vectors = self.items.vectors[items]
        self.model.put_items(items, text_vectors)
        retrieval_table = self.model.retrieval_table()
        self.table = retrieval_table[:, :self.table.shape[1]]  # the item vectors lead the retrieval rows
        self.retrieval_table = retrieval_table
        if self.reranker is not None:
            self.reranker.put_items(items, self.table[items], text_vectors)
        if self.index is not None:
            self.index.upsert([self.items.item_id(int(i)) for i in items], retrieval_table[items].numpy())

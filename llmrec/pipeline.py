"""Recommender: the online facade over one trained run — what a product team calls in production.

    rec = Recommender.load("runs/beauty")
    rec.recommend("A1YJEY40YUW4SE", k=10)                 # retrieve (ChromaDB) -> rerank -> top k
    rec.recommend(history=["B0009RF9DW", "B000FS05VE"])  # an anonymous session
    rec.add_interaction("A1YJEY40YUW4SE", "B004Z40048")   # durable when it returns; the next list changes
    rec.profile("A1YJEY40YUW4SE")                         # interest summary + long/short-term weights
    rec.explain("A1YJEY40YUW4SE", "B004Z40048")           # attribution + grounded LLM explanation

Retrieval asks the ChromaDB collection of the interest model's item vectors (inner product) for the top N
unseen items; the reranker rescores them. A new interaction is logged in SQLite (WAL, fsync per commit) before
it is acknowledged and changes the user's short-term input at once; the long-term profile is rewritten every
`online.profile_refresh_every` new interactions on a background thread, never on the request path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from llmrec.claims import ClaimChecker
from llmrec.config import check_k, load_config, save_config
from llmrec.data.split import PADDING
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError, DataError
from llmrec.experiment import Experiment, collection_name
from llmrec.explain import Explainer, attribute
from llmrec.index.chroma_index import CollectionMissingError, ItemIndex
from llmrec.llm import GenerationParams, make_backend
from llmrec.models.interest import InterestModel
from llmrec.models.long_term import GRAPH_SOURCES, long_term_vectors, profile_writer_of
from llmrec.online.events import EventStore
from llmrec.online.hybrid import hybrid_list
from llmrec.online.users import UserBook
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.hygiene import split_sentences
from llmrec.profiles.service import ProfileService
from llmrec.profiles.writer import Profile, ProfileRequest
from llmrec.ranking import Exclusion, RankedItems, top_items
from llmrec.rerank.candidates import index_candidates, item_table
from llmrec.rerank.reranker import Reranker

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


class Recommender:
    """Recommend, profile, explain and update for the users of one run folder (see the module docstring)."""

    def __init__(self, experiment: Experiment, model: InterestModel | None = None) -> None:
        """`model` replaces the run's own interest model (an adapted one, see `load`); the run's reranker,
        trained over its own model, is then not used."""
        self.experiment = experiment
        self.config = config = experiment.config
        self.split = experiment.split
        adapted = model is not None
        if model is None:
            model_dir = experiment.model_dir(InterestModel.name)
            if not (model_dir / "model.json").is_file():
                raise ConfigError(f"no trained interest model in {model_dir}; run `llmrec train -m llmrec` first")
            model = experiment.model(InterestModel.name)
            if not isinstance(model, InterestModel):
                raise ConfigError(f"{model_dir} holds no interest model")
        self.model = model
        self.table = item_table(model)
        self.retrieval_table = model.retrieval_table()
        has_reranker = not adapted and (experiment.model_dir(Reranker.name) / "model.json").is_file()
        self.reranker = experiment.reranker() if config.online.rerank and has_reranker else None
        self.index = self._item_index() if config.online.retrieval == "index" else None
        self.users = UserBook(self.split, model.inputs)
        self.events = EventStore(config.online.events or Path(config.run_dir) / "events.sqlite")
        self._lock = threading.RLock()
        self._llm_lock = threading.Lock()
        self._refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-refresh")
        self._refreshes: list[Future] = []
        self._summaries_queued: set[int] = set()
        self._facts = CatalogFacts.from_catalog(experiment.dataset.catalog, self.split,
                                                config.profile.category_column, config.profile.title_chars)
        self._texts = [""] + [str(t) for t in experiment.dataset.catalog.items.set_index("item_id")
                              .reindex(self.split.item_ids)["text"].fillna("")]
        self._popularity = self.split.train_popularity()
        self._explainer: Explainer | None = None
        self._replay_events()

    @classmethod
    def load(cls, run_dir: str | Path, overrides: list[str] | None = None,
             adapter: str | Path | None = None) -> "Recommender":
        """The facade over a run folder written by `llmrec train` / `llmrec run` (its config.yaml, models,
        profiles and events); `overrides` are `section.key=value` strings as on the command line. With `adapter`
        (a folder, or a name under run_dir/adapters/, written by `llmrec finetune`), `run_dir` is the adapter's
        target run (the new domain's config, data and profiles) and the interest model is the base run's,
        transferred and adapted (`llmrec.transfer.load_adapter`)."""
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not an llmrec run folder (no config.yaml); train a model there first")
        experiment = Experiment(load_config(path, [f"run_dir={run_dir}", *(overrides or [])]))
        if adapter is None:
            return cls(experiment)
        from llmrec.transfer import load_adapter  # peft is imported only for adapters

        return cls(experiment, load_adapter(experiment, adapter))

    # ------------------------------------------------------------------------------------------------ serving

    def recommend(self, user_id: str | None = None, k: int = 10, *, history: Sequence[str] | None = None,
                  context: dict[str, str] | None = None, exclude: Sequence[str] = (),
                  mode: str = "default") -> list[Recommendation]:
        """Top-`k` unseen items for a known user (`user_id`) or an anonymous `history` of item ids (oldest
        first). `context` (e.g. {"device": "mobile"}) replaces the user's usual context; `exclude` lists
        more item ids to leave out; `mode="hybrid"` fills the list from the short-term, long-term and context
        interests in `online.hybrid_mix` shares and tags each item."""
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
        context_ids = self.model.inputs.context_ids(user, context)[None] if context else None
        with self._lock:
            if not len(items):
                return self._popular_items(exclusion, k)
            if mode == "hybrid":
                return self._hybrid(user, items, context_ids, exclusion, k)
            return self._ranked(user, items, context_ids, exclusion, k)

    def profile(self, user_id: str) -> dict[str, Any]:
        """What the user likes: the interest summary of their whole known history (text, top categories,
        representative items, provenance; None for a user without interactions) and the weights the model gives
        long- and short-term interest now."""
        user = self.users.index(user_id)
        history = self.users.history(user)
        summary = self._summary(user, str(user_id), history)
        return {"user_id": str(user_id), "history_length": int(len(history)),
                "interest_weights": self._interest_weights(user, history),
                "profile": summary.to_dict() if summary else None}

    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """Why `item_id` suits the user: the history items and profile sentences behind the score, with weights
        from the model's own item vectors, and a short LLM explanation that may only cite the user's history
        (else the attribution text is used)."""
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
        with self._llm_lock:
            explanation = self.explainer.explain(str(item_id), attribution, history)
        return {**explanation.to_dict(), "interest_weights": weights}

    def add_interaction(self, user_id: str, item_id: str, timestamp: float | None = None,
                        context: dict[str, str] | None = None) -> dict[str, Any]:
        """Log an interaction (durably: it is committed before this returns) and use it from the next request
        on. A user never seen before is created. Every `online.profile_refresh_every` new interactions the
        user's profile is rewritten in the background."""
        item = self.split.item_index(item_id)
        event = self.events.append(user_id, item_id, timestamp, context)
        with self._lock:
            user, since_profile = self.users.add(event.user_id, item, event.timestamp)
        every = self.config.online.profile_refresh_every
        refresh = bool(every) and since_profile >= every
        if refresh:
            self._schedule_refresh(user, event.user_id)
        return {"event_id": event.event_id, "user_id": event.user_id,
                "history_length": int(len(self.users.history(user))), "profile_refresh": refresh}

    def health(self) -> dict[str, Any]:
        """Liveness and what is being served."""
        return {"status": "ok", "items": self.split.num_items, "users": len(self.users),
                "model": InterestModel.name, "reranker": self.reranker is not None,
                "retrieval": "index" if self.index is not None else "exact",
                "index": self.index.location if self.index is not None else None, "events": self.events.count()}

    def save(self) -> Path:
        """Finish pending profile refreshes and write the configuration; events and profiles are already on
        disk (SQLite), so `Recommender.load` of the run folder continues from here."""
        self.wait_for_refreshes()
        save_config(self.config, Path(self.config.run_dir) / "config.yaml")
        return Path(self.config.run_dir)

    def wait_for_refreshes(self) -> None:
        """Block until the background profile refreshes scheduled so far are done."""
        for future in list(self._refreshes):
            future.result()

    def close(self) -> None:
        """Stop the background worker and free the LLM."""
        self._refresher.shutdown(wait=True)
        self.profiles.release_llm()
        if self._explainer is not None and self._explainer.backend is not None:
            self._explainer.backend.close()

    # ------------------------------------------------------------------------------------------------ internals

    @property
    def dataset_name(self) -> str:
        """The served dataset's name (the key of its profile stores)."""
        return self.experiment.dataset.name

    @property
    def profiles(self) -> ProfileService:
        """The profile writer and stores (interest summaries and long-term model inputs)."""
        return self.experiment.profiles

    @property
    def encoder(self) -> ItemEncoder:
        """The text encoder, for text the bundle does not hold (profile sentences, new texts)."""
        return self.experiment.encoder

    @property
    def item_vectors(self) -> np.ndarray:
        """The catalog's text vectors ([items + 1, dim], row 0 padding)."""
        return self.experiment.item_vectors

    @property
    def explainer(self) -> Explainer:
        """The explanation writer: the configured LLM (`online.explain_with_llm`), else attribution text."""
        if self._explainer is None:
            backend = make_backend(self.config.llm) if self.config.online.explain_with_llm else None
            params = GenerationParams(max_tokens=60, temperature=0.0, seed=self.config.seed)  # greedy read best
            self._explainer = Explainer(ClaimChecker.from_facts(self._facts), backend, params)
        return self._explainer

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
        with self._lock:
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
            if user not in self._summaries_queued:
                self._summaries_queued.add(user)
                self._refreshes.append(self._refresher.submit(self._write_summary, user, user_id, history))
        return stored or service.with_writer("template").summary(user_id, history)

    def _write_summary(self, user: int, user_id: str, history: np.ndarray) -> None:
        """Write (and store) the user's interest summary with the LLM; a background job."""
        try:
            with self._llm_lock:
                self.profiles.summary(user_id, history)
        except Exception:  # a background job: log it, the user keeps the previous summary
            log.exception("summary failed for user %s", user_id)
            raise
        finally:
            with self._lock:
                self._summaries_queued.discard(user)

    def _schedule_refresh(self, user: int, user_id: str) -> None:
        """Queue a rewrite of the user's profile (one worker, in order: a later one reads a newer history)."""
        self.users.profile_written(user)
        with self._lock:
            self._refreshes = [f for f in self._refreshes if not f.done()]
            self._refreshes.append(self._refresher.submit(self._refresh_profile, user, user_id))

    def _refresh_profile(self, user: int, user_id: str) -> None:
        """Rewrite one user's long-term profile from their current history, swap its vector in, and rewrite the
        interest summary."""
        try:
            history = self.users.history(user)
            cutoff = max(0, len(history) - self.config.profile.recent_items)
            service = self._profile_service()
            profile = None
            if service is not None and cutoff:
                with self._llm_lock:
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
        vector: np.ndarray | float = 0.0
        if len(long_term):
            service = self._profile_service()
            source = self._profile_source
            graph = self.experiment.long_term_graph() if source in GRAPH_SOURCES else None
            vector = long_term_vectors(source, [long_term], np.array([-1]), [profile.text] if profile else None,
                                       service.prompt_version if service else None, self.encoder,
                                       self.item_vectors, graph)[0]
        with self._lock:
            self.model.inputs.profiles[user] = vector
            self.model.inputs.has_profile[user] = len(long_term) > 0

    def _replay_events(self) -> None:
        """Apply the logged events of earlier sessions, then each such user's latest long-term vector: the stored
        refreshed profile, or, for sources without text, the long-term part of the current history once the
        user has had a refresh's worth of events."""
        skipped = 0
        events: dict[int, int] = {}
        user_ids: dict[int, str] = {}
        for event in self.events.events_since(0):
            try:
                item = self.split.item_index(event.item_id)
            except KeyError:
                skipped += 1
                continue
            user, _ = self.users.add(event.user_id, item, event.timestamp)
            events[user] = events.get(user, 0) + 1
            user_ids[user] = event.user_id
        if skipped:
            log.warning("%d logged events name items that are not in the catalog; skipped", skipped)
        every = self.config.online.profile_refresh_every
        for user, user_id in user_ids.items():
            history = self.users.history(user)
            if self._profile_service() is not None:
                stored = self._stored_profile(user_id)
                if stored is not None and stored.provenance.cutoff > 0:
                    self._set_long_term(user, history[:stored.provenance.cutoff], stored)
            elif every and events[user] >= every:
                self._set_long_term(user, history[:max(0, len(history) - self.config.profile.recent_items)], None)

    def _item_index(self) -> ItemIndex:
        """The ChromaDB collection of the interest model's retrieval vectors (inner product; with the new-item
        boost coordinate), (re)built when it does not hold exactly these vectors."""
        vectors = self.retrieval_table[1:].numpy()
        digest = hashlib.sha256(vectors.tobytes()).hexdigest()[:12]
        config = dataclasses.replace(self.config.index, space="ip", collection=None)
        name = collection_name(self.dataset_name, f"llmrec-{digest}")
        index = ItemIndex(config, Path(self.config.run_dir) / "index", name)
        try:
            complete = index.count() == len(vectors)
        except CollectionMissingError:
            complete = False
        if not complete:
            index.rebuild([str(i) for i in self.split.item_ids], vectors)
        return index

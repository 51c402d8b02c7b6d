"""Recommender: the online facade over one trained run — what a product team calls in production.

    rec = Recommender.load("runs/beauty")
    rec.recommend("A1YJEY40YUW4SE", k=10)                 # retrieve (ChromaDB) -> rerank -> top k
    rec.recommend(history=["B0009RF9DW", "B000FS05VE"])  # an anonymous session
    rec.recommend(interests="gentle skin care for dry skin")  # a user known only by their words
    rec.add_interaction("A1YJEY40YUW4SE", "B004Z40048")   # durable when it returns; the next list changes
    rec.profile("A1YJEY40YUW4SE")                         # interest summary + long/short-term weights
    rec.explain("A1YJEY40YUW4SE", "B004Z40048")           # attribution + grounded LLM explanation
    rec.add_item("NEW-1", "Rose Night Cream. Categories: Skin Care", title="Rose Night Cream")  # at once

Retrieval asks the ChromaDB collection of the interest model's item vectors (inner product) for the top N
unseen items; the reranker rescores them. A new interaction is logged in SQLite (WAL, fsync per commit) before
it is acknowledged and changes the user's short-term input at once; the long-term profile is rewritten every
`online.profile_refresh_every` new interactions on a background thread, never on the request path. Items added,
updated or deleted while serving are logged the same way (`llmrec.online.item_log`) and recommendable (or gone)
from the next request, without retraining: a new item is embedded by the item encoder and scored from its text,
like an item never seen in training.
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
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError, ConflictError, DataError, UnknownIdError
from llmrec.experiment import Experiment, collection_name
from llmrec.explain import Explainer, attribute
from llmrec.index.chroma_index import CollectionMissingError, ItemIndex
from llmrec.llm import GenerationParams, make_backend
from llmrec.models.interest import InterestModel
from llmrec.models.long_term import GRAPH_SOURCES, long_term_vectors, profile_writer_of
from llmrec.online.events import EventStore, clean_id
from llmrec.online.hybrid import hybrid_list
from llmrec.online.item_log import Action, ItemChange, ItemLog
from llmrec.online.items import ItemBook
from llmrec.online.users import UserBook
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.hygiene import split_sentences
from llmrec.profiles.service import ProfileService
from llmrec.profiles.writer import Profile, ProfileRequest
from llmrec.rerank.candidates import Candidates, exact_candidates, index_candidates, item_table
from llmrec.rerank.reranker import Reranker
from llmrec.text import clean_input_text

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
        self.index: ItemIndex | None = None  # built once the item log is replayed
        self.users = UserBook(self.split, model.inputs)
        self.events = EventStore(config.online.events or Path(config.run_dir) / "events.sqlite")
        self._lock = threading.RLock()
        self._llm_lock = threading.Lock()
        self._refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-refresh")
        self._refreshes: list[Future] = []
        self._summaries_queued: set[int] = set()
        self._facts: CatalogFacts = self.profiles.facts
        texts = experiment.dataset.catalog.items.set_index("item_id").reindex(self.split.item_ids)["text"]
        self.items = ItemBook([str(i) for i in self.split.item_ids], texts.fillna("").tolist(),
                              experiment.item_vectors)
        self.item_log = ItemLog(config.online.items or Path(config.run_dir) / "items.sqlite",
                                config.online.max_text_chars)
        self._items_lock = threading.Lock()
        self._popularity = self.split.train_popularity()
        self._popular = np.argsort(-self._popularity, kind="stable")
        self._explainer: Explainer | None = None
        index_name = self._index_name() if config.online.retrieval == "index" else None
        self._replay_items()
        if index_name is not None:
            self.index = self._item_index(index_name)
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
                  interests: str | None = None, context: dict[str, str] | None = None, exclude: Sequence[str] = (),
                  mode: str = "default") -> list[Recommendation]:
        """Top-`k` unseen items for a known user (`user_id`), or for an anonymous user from a `history` of item
        ids (oldest first) and/or `interests` stated in words ("I like dark Scandinavian crime novels": the
        model's long-term input, see `stated_interest_vectors`). `context` (e.g. {"device": "mobile"}) replaces
        the user's usual context; `exclude` lists more item ids to leave out; `mode="hybrid"` fills the list from
        the short-term, long-term and context interests in `online.hybrid_mix` shares and tags each item. Deleted
        items are never recommended."""
        if (user_id is None) == (history is None and interests is None):
            raise DataError("pass exactly one of: a user_id, or a history and/or interests (an anonymous user)")
        check_k(k)
        if mode not in MODES:
            raise DataError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if user_id is not None:
            user = self.users.index(user_id)
            items = self.users.history(user)
        else:
            user, items = -1, np.array([self.items.item_index(i) for i in history or []], dtype=np.int64)
        profiles = self.stated_interest_vectors([interests]) if interests is not None else None
        blocked = np.unique(np.concatenate([items, [self.items.item_index(i) for i in exclude],
                                            self.items.deleted]).astype(np.int64))
        context_ids = self.model.inputs.context_ids(user, context)[None] if context else None
        with self._lock:
            if not len(items) and profiles is None:
                return self._popular_items(blocked, k)
            if mode == "hybrid":
                return self._hybrid(user, items, context_ids, blocked, k, profiles)
            return self._ranked(user, items, context_ids, blocked, k, profiles)

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
        item = self.items.item_index(item_id)
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
        user's profile is rewritten in the background. A deleted item may not be named (DeletedItemError)."""
        item = self.items.live_index(item_id)
        event = self.events.append(user_id, item_id, timestamp, context)
        with self._lock:
            user, since_profile = self.users.add(event.user_id, item, event.timestamp)
        every = self.config.online.profile_refresh_every
        refresh = bool(every) and since_profile >= every
        if refresh:
            self._schedule_refresh(user, event.user_id)
        return {"event_id": event.event_id, "user_id": event.user_id,
                "history_length": int(len(self.users.history(user))), "profile_refresh": refresh}

    # ------------------------------------------------------------------------------------------------ items

    def add_item(self, item_id: str, text: str, *, title: str | None = None,
                 categories: Sequence[str] = ()) -> dict[str, Any]:
        """Add an item while serving; it is recommendable from the next request on, without retraining (scored
        from its text alone, like an item never seen in training, with `interest.new_item_boost`). `text` is the
        item's text as the catalog has it, which the item encoder embeds (for a MovieLens run, e.g.
        `Heat (1995). Genres: Action, Crime`); `title` (default: the text) and `categories` are what profiles and
        explanations may say about it. Logged durably before it returns. ConflictError for an id already taken
        (by a deleted item too: ids are not reused); DataError for an empty or over-long text
        (`online.max_text_chars`), a bad id or bad categories."""
        return self._change_item("add", item_id, text, title, categories)

    def update_item(self, item_id: str, text: str, *, title: str | None = None,
                    categories: Sequence[str] = ()) -> dict[str, Any]:
        """Replace the text, title and categories of an item added while serving (embedded and indexed again at
        once). UnknownIdError for an unknown or deleted item, ConflictError for a catalog item (change the
        dataset and retrain)."""
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
        """The text vectors of the catalog and the items added online ([items + 1, dim], row 0 padding)."""
        return self.items.vectors

    @property
    def explainer(self) -> Explainer:
        """The explanation writer: the configured LLM (`online.explain_with_llm`), else attribution text."""
        if self._explainer is None:
            backend = make_backend(self.config.llm) if self.config.online.explain_with_llm else None
            params = GenerationParams(max_tokens=60, temperature=0.0, seed=self.config.seed)  # greedy read best
            self._explainer = Explainer(ClaimChecker.from_facts(self._facts), backend, params)
        return self._explainer

    def _ranked(self, user: int, items: np.ndarray, context: np.ndarray | None, blocked: np.ndarray,
                k: int, profiles: torch.Tensor | None = None) -> list[Recommendation]:
        users = np.array([user])
        n = max(k, self.config.rerank.candidates) if self.reranker else k
        if self.reranker is not None:
            queries = self.reranker.describe(users, [items], context, profiles)
            candidates = self._candidates(queries.interest, blocked, n)
            scores = self.reranker.rerank(queries, candidates)[0]
        else:
            interest, _ = self.model.interest(users, [items], context, profiles)
            candidates = self._candidates(interest, blocked, n)
            scores = candidates.scores[0]
        order = scores.argsort(descending=True)[:k]
        return [self._recommendation(int(candidates.items[0, i]), float(scores[i]))
                for i in order.tolist() if candidates.items[0, i] > 0]

    def _candidates(self, interest: torch.Tensor, blocked: np.ndarray, n: int) -> Candidates:
        queries = self.model.retrieval_queries(interest)
        if self.index is None:
            return exact_candidates(queries, self.retrieval_table, [blocked], n)
        return index_candidates(self.index, queries, [blocked], n, self.items)

    def _hybrid(self, user: int, items: np.ndarray, context: np.ndarray | None, blocked: np.ndarray,
                k: int, profiles: torch.Tensor | None = None) -> list[Recommendation]:
        components = self.model.components(np.array([user]), [items], context, profiles)[0]
        excluded = torch.zeros(len(self.table), dtype=torch.bool)
        excluded[torch.as_tensor(blocked)] = True
        return [self._recommendation(t.item, t.score, t.tag)
                for t in hybrid_list(components, self.table, excluded, self.config.online.hybrid_mix, k)]

    def _popular_items(self, blocked: np.ndarray, k: int) -> list[Recommendation]:
        """The cold-start answer for an empty history: the most popular items in training."""
        seen = set(blocked.tolist())
        ranked = [i for i in self._popular if i > 0 and i not in seen][:k]
        return [self._recommendation(int(i), float(self._popularity[i]), "popular") for i in ranked]

    def _recommendation(self, item: int, score: float, tag: str | None = None) -> Recommendation:
        return Recommendation(self.items.item_id(item), score, self.items.texts[item], tag)

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

    def _long_term_inputs(self, long_terms: Sequence[np.ndarray], texts: Sequence[str] | None) -> np.ndarray:
        """[len(long_terms), P] long-term inputs of users the model was not trained with: folded in from their
        long-term items, with `texts` (profile texts, stated interests) embedded for the sources that read one."""
        service = self._profile_service()
        source = self._profile_source
        graph = self.experiment.long_term_graph() if source in GRAPH_SOURCES else None
        return long_term_vectors(source, long_terms, np.full(len(long_terms), -1), texts,
                                 service.prompt_version if service else None, self.encoder, self.item_vectors,
                                 graph)

    def _set_long_term(self, user: int, long_term: np.ndarray, profile: Profile | None) -> None:
        """Swap in the user's long-term vector (the graph folds the user in from the long-term items); an empty
        long-term part has none."""
        vector: np.ndarray | float = 0.0
        if len(long_term):
            vector = self._long_term_inputs([long_term], [profile.text] if profile else None)[0]
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
                item = self.items.item_index(event.item_id)
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

    def _change_item(self, action: Action, item_id: str, text: str = "", title: str | None = None,
                     categories: Sequence[str] = ()) -> dict[str, Any]:
        """Check a change against the items, embed its text, log it (durably) and apply it."""
        with self._items_lock:  # one change at a time, so the check still holds when the change is applied
            item_id = clean_id(item_id, "item_id")
            self.items.check(action, item_id)
            vectors = np.zeros((1, self.items.vectors.shape[1]), dtype=np.float32)
            if action != "delete":
                text = clean_input_text(text, "text", self.config.online.max_text_chars)
                vectors = self._encode_item_texts([text])
            change = self.item_log.append(action, item_id, text, title, categories)
            self._apply_item_changes([change], vectors)
        return {"item_id": change.item_id, "action": action, "log_id": change.log_id}

    def _encode_item_texts(self, texts: list[str]) -> np.ndarray:
        """Item texts embedded as the catalog's are (the same encoder, under the catalog's text template key)."""
        return self.encoder.encode(texts, self.experiment.dataset.catalog.text_template)

    def _apply_item_changes(self, changes: Sequence[ItemChange], vectors: np.ndarray) -> None:
        """Apply logged changes in log order (`vectors[i]`: change i's embedded text; unused for a delete): the
        item book and facts, then, once for all the items they add or update, the interest model's item rows,
        the retrieval tables, the reranker and the index. A change the items refuse (an id another process added
        first) is skipped with a warning."""
        changed: set[int] = set()
        with self._lock:
            for change, vector in zip(changes, vectors, strict=True):
                try:
                    item = self.items.apply(change, vector)
                except (ConflictError, UnknownIdError) as exc:
                    log.warning("item change %d skipped: %s", change.log_id, exc)
                    continue
                if change.action != "delete":
                    self._facts.put(item, change.item_id, change.title or change.text, change.categories)
                    changed.add(item)
            if not changed:
                return
            items = torch.as_tensor(sorted(changed))
            text_vectors = self.items.vectors[items.numpy()]
            self.model.put_items(items.numpy(), text_vectors)
            self.retrieval_table = self.model.retrieval_table()
            self.table = self.retrieval_table[:, :-1]
            if self.reranker is not None:
                self.reranker.put_items(items.numpy(), self.table[items], text_vectors)
            if self.index is not None:
                self.index.upsert([self.items.item_id(i) for i in items.tolist()],
                                  self.retrieval_table[items].numpy())

    def _replay_items(self, since: int = 0) -> int:
        """Apply the item log's changes after log id `since`, embedding their texts in one pass, and return the
        last log id applied. On load: every change of earlier sessions, after the catalog and before the events
        (which may name these items); a process following another's changes passes the last id it applied."""
        changes = self.item_log.items_since(since)
        if not changes:
            return since
        vectors = np.zeros((len(changes), self.items.vectors.shape[1]), dtype=np.float32)
        written = [i for i, change in enumerate(changes) if change.action != "delete"]
        if written:
            vectors[written] = self._encode_item_texts([changes[i].text for i in written])
        self._apply_item_changes(changes, vectors)
        log.info("applied %d logged item changes (%d items added in all)", len(changes), len(self.items.added))
        return changes[-1].log_id

    def _index_name(self) -> str:
        """The index collection's name: a digest of the catalog's retrieval vectors (before any item added online)
        and of the item log's path, so a collection holds one catalog with one log's items."""
        catalog = self.retrieval_table[1:self.items.catalog_size + 1].numpy().tobytes()
        digest = hashlib.sha256(catalog + str(self.item_log.path.resolve()).encode()).hexdigest()[:12]
        return collection_name(self.dataset_name, f"llmrec-{digest}")

    def _item_index(self, name: str) -> ItemIndex:
        """The ChromaDB collection `name` of the interest model's retrieval vectors (inner product; with the
        new-item boost coordinate) of every item, the added ones included: rebuilt when it does not hold as many
        items, else the added items are upserted again (repairing a change logged just before a crash)."""
        vectors = self.retrieval_table[1:].numpy()
        config = dataclasses.replace(self.config.index, space="ip", collection=None)
        index = ItemIndex(config, Path(self.config.run_dir) / "index", name)
        try:
            complete = index.count() == len(vectors)
        except CollectionMissingError:
            complete = False
        if not complete:
            index.rebuild([self.items.item_id(i) for i in range(1, len(self.items))], vectors)
        elif self.items.added:
            added = self.items.added
            index.upsert([self.items.item_id(i) for i in added], self.retrieval_table[added].numpy())
        return index

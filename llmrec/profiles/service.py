"""ProfileService: the profile writer and store of one run, and `profile(user)` for the Python API."""

from __future__ import annotations

import dataclasses
import logging
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from llmrec.config import ProfileConfig, RunConfig
from llmrec.data.schema import Dataset
from llmrec.data.split import Split
from llmrec.errors import ConfigError
from llmrec.llm import GenerationParams, backend_class, make_backend
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.ids import model_id_for
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.grammar import prompt_key
from llmrec.profiles.job import JobReport, long_term_request, run_profile_job
from llmrec.profiles.prompt import ChatTemplate
from llmrec.profiles.store import ProfileStore
from llmrec.profiles.template_writer import TemplateProfileText
from llmrec.profiles.writer import TEMPLATE_MODEL_ID, Profile, ProfileRequest, ProfileWriter

log = logging.getLogger(__name__)


class ProfileService:
    """Writes and serves a run's profiles (`config.profile` says how): the interest model's long-term inputs
    (`profile`, `write_all`) and the interest summaries people are shown (`summary`). It reads the users'
    histories from `split` and the items from `facts`; the store is `profile.store`, else
    `<run_dir>/profiles.sqlite`."""

    def __init__(self, config: RunConfig, split: Split, facts: CatalogFacts, run_dir: str | Path,
                 store: ProfileStore | None = None) -> None:
        self.config = config
        self.split = split
        self.facts = facts
        self.store = store or ProfileStore(config.profile.store or Path(run_dir) / "profiles.sqlite")
        preload = config.profile.preload
        if preload:
            if not Path(preload).is_file():
                raise ConfigError(f"profile.preload: file not found: {preload}")
            log.info("preloaded %d profiles from %s", self.store.load_export(preload, replace=False), preload)

    @classmethod
    def from_dataset(cls, config: RunConfig, dataset: Dataset, split: Split, run_dir: str | Path) -> "ProfileService":
        """The service of a run over its loaded dataset (the catalog facts come from `dataset.catalog`)."""
        settings = config.profile
        facts = CatalogFacts.from_catalog(dataset.catalog, split, settings.category_column, settings.title_chars)
        return cls(config, split, facts, run_dir)

    @property
    def dataset_name(self) -> str:
        """The dataset's name, the first part of every store key."""
        return self.split.dataset

    @cached_property
    def adapter(self) -> LoRAAdapter | None:
        """The tuned writer's adapter (`profile.adapter`), None for the base model or the template writer."""
        settings = self.config.profile
        return LoRAAdapter.load(settings.adapter) if settings.adapter and settings.writer == "llm" else None

    @cached_property
    def settings(self) -> ProfileConfig:
        """`config.profile`, with the prompt a tuned writer's adapter was trained on."""
        if self.adapter is None:
            return self.config.profile
        _, name, version = self.adapter.prompt_template
        return dataclasses.replace(self.config.profile, prompt=name, prompt_version=version,
                                   grammar=self.adapter.manifest.grammar)

    @cached_property
    def model_id(self) -> str:
        """The writer's model id (`template` for the template writer), known without loading the LLM."""
        if self.config.profile.writer != "llm":
            return TEMPLATE_MODEL_ID
        base = model_id_for(self.config.llm)
        return self.adapter.model_id(base) if self.adapter else base

    @cached_property
    def prompt_version(self) -> str:
        """The key of the prompt (or template) the writer uses, e.g. `profile/llm.v1`."""
        if self.settings.writer == "llm":
            key = ChatTemplate.load("profile", self.settings.prompt, self.settings.prompt_version).key
            return prompt_key(key, self.settings.grammar and backend_class(self.config.llm).supports_grammar)
        return TemplateProfileText().key

    @cached_property
    def writer(self) -> ProfileWriter:
        """The configured writer; building it loads the LLM when `profile.writer` is `llm`."""
        settings = self.settings
        backend = make_backend(self.config.llm, self.adapter) if settings.writer == "llm" else None
        params = GenerationParams(max_tokens=settings.max_tokens, temperature=self.config.llm.temperature,
                                  seed=self.config.seed)
        return ProfileWriter(self.facts, self.dataset_name, settings, backend, params)

    def release_llm(self) -> None:
        """Free the LLM (it is loaded again when next needed); call it before CPU-heavy work in this process."""
        writer = self.__dict__.pop("writer", None)
        if writer is not None and writer.backend is not None:
            writer.backend.close()

    def request(self, user_id: str) -> ProfileRequest:
        """The long-term part of a known user's training history."""
        return long_term_request(self.split, self.split.user_index(user_id), self.config.profile.recent_items)

    def write_all(self, users: Sequence[int] | None = None, progress: bool = True,
                  recheck: bool = False) -> JobReport:
        """Profiles for every user (or the given user indices), skipping those already stored; with `recheck`,
        stored LLM texts that today's output checks reject are written again (`purge_rejected`)."""
        users = range(self.split.num_users) if users is None else users
        requests = [long_term_request(self.split, u, self.config.profile.recent_items) for u in users]
        if recheck:
            self.purge_rejected(requests)
        return run_profile_job(self.writer, self.store, requests, self.config.llm.batch_size, progress)

    def purge_rejected(self, requests: Sequence[ProfileRequest]) -> int:
        """Delete the stored LLM profiles of these requests that the writer would reject today (a few-shot copy,
        an instruction from a title, a degenerate text) or whose text a user before them in the store's order
        already has (`duplicate`); returns how many. Stores written by older versions are brought up to today's
        checks so."""
        if self.settings.writer != "llm":
            return 0
        writer = self.writer
        stored = [(r, p) for r, p in zip(requests, self.lookup(requests)) if p is not None and p.source == "llm"]
        owners: dict[str, str] = {}
        for profile in self.store.profiles(self.dataset_name):
            if profile.source == "llm" and (profile.provenance.prompt_version, profile.provenance.model_id) == (
                    writer.prompt_version, writer.model_id):
                owners.setdefault(profile.text, profile.user_id)
        rejected = [p for r, p in stored if owners.get(p.text, p.user_id) != p.user_id
                    or writer.rejection(p.text, writer.digest(r.long_term)) is not None]
        if rejected:
            log.info("%d of %d stored LLM profiles fail today's checks; they are written again", len(rejected),
                     len(stored))
        return self.store.delete(rejected)

    def with_writer(self, writer: str, adapter: str | None = None, grammar: bool = False) -> "ProfileService":
        """The same run's profiles written by another writer (`llm` or `template`; with `adapter`, the tuned
        LLM writer; with `grammar`, decoding follows the profile grammar), in the same store."""
        settings = dataclasses.replace(self.config.profile, writer=writer, preload=None, adapter=adapter,
                                       grammar=grammar)
        return ProfileService(dataclasses.replace(self.config, profile=settings), self.split, self.facts,
                              self.config.run_dir, self.store)

    def lookup(self, requests: Sequence[ProfileRequest]) -> list[Profile | None]:
        """The stored profile of each request's history by this writer, None where there is none."""
        found = [self.store.get(self.dataset_name, r.user_id, self.prompt_version, self.model_id, r.cutoff)
                 if len(r.long_term) else None for r in requests]
        return [p if p is not None and p.provenance.history_hash == r.history_hash else None
                for p, r in zip(found, requests)]

    def stored(self, requests: Sequence[ProfileRequest]) -> list[Profile | None]:
        """The stored profile of each request (None for an empty long-term part, which gets none); ConfigError
        naming how many are missing (or stale) otherwise."""
        found = self.lookup(requests)
        missing = [r for r, p in zip(requests, found) if len(r.long_term) and p is None]
        if missing:
            raise ConfigError(
                f"{len(missing)} of {len(requests)} users have no stored profile by {self.model_id} with "
                f"{self.prompt_version} for their current history (e.g. user {missing[0].user_id}); run "
                "`llmrec profile` first"
            )
        return found

    def profile(self, user_id: str) -> Profile | None:
        """A user's long-term model input: the stored one when it matches the current history, else written (and
        stored) now; None when the long-term part is empty (every item is a recent one)."""
        request = self.request(user_id)
        if not len(request.long_term):
            return None
        stored = self.store.get(self.dataset_name, user_id, self.prompt_version, self.model_id, request.cutoff)
        if stored is not None and stored.provenance.history_hash == request.history_hash:
            return stored
        (profile,) = self.writer.write([request])
        self.store.put([profile])
        return profile

    @cached_property
    def summaries(self) -> ProfileStore:
        """The interest summaries (`summary`), in their own table beside the long-term inputs'."""
        return self.store.beside("summaries")

    def summary_request(self, user_id: str, history: np.ndarray | None = None) -> ProfileRequest:
        """The interest summary's input: the user's whole known history (default: the full sequence of a user of
        the split, validation and test items included; the summary is shown to people, never fed to the model)."""
        if history is None:
            history = self.split.sequences[self.split.user_index(user_id)]
        history = np.asarray(history, dtype=np.int64)
        if not len(history):
            raise ValueError(f"user {user_id} has no interactions yet: there is nothing to summarise")
        return ProfileRequest(str(user_id), history, len(history))

    def stored_summary(self, request: ProfileRequest) -> Profile | None:
        """The stored summary of this request's history, else the user's latest one (of an older history), else
        None."""
        stored = self.summaries.get(self.dataset_name, request.user_id, self.prompt_version, self.model_id,
                                    request.cutoff)
        if stored is not None and stored.provenance.history_hash == request.history_hash:
            return stored
        return self.summaries.get(self.dataset_name, request.user_id, self.prompt_version, self.model_id)

    def summary(self, user_id: str, history: np.ndarray | None = None) -> Profile:
        """What the user likes, from their whole known history: stored, or written (and stored) now."""
        request = self.summary_request(user_id, history)
        stored = self.stored_summary(request)
        if stored is not None and stored.provenance.history_hash == request.history_hash:
            return stored
        (profile,) = self.writer.write([request])
        self.summaries.put([profile])
        return profile

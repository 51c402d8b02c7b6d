"""The interest model's feature store, built at training time: long-term vectors (from profiles), user-level
context and interaction times."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from llmrec.config import RunConfig
from llmrec.data.schema import USER_ID, Dataset
from llmrec.data.split import Split
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.models.lightgcn import LightGCN
from llmrec.models.long_term import long_term_vectors, profile_writer_of
from llmrec.models.time_features import TimeLookup
from llmrec.models.user_features import UserFeatures
from llmrec.profiles.job import long_term_request
from llmrec.profiles.service import ProfileService

log = logging.getLogger(__name__)
MAX_CONTEXT_VALUES = 100
"""User attribute columns with more distinct values than this (zip codes, names) are not used as context."""


def build_user_features(config: RunConfig, dataset: Dataset, split: Split, item_vectors: np.ndarray,
                        encoder: ItemEncoder, profiles: ProfileService, graph: LightGCN | None = None
                        ) -> UserFeatures:
    """Long-term vectors from `config.interest.profile_source` (see `llmrec.models.long_term`; `graph` is the
    long-term LightGCN the graph sources need), context from user attributes and the interactions' context
    columns, and the interactions' timestamps when `config.interest.time_features` asks for them."""
    requests = [long_term_request(split, u, config.profile.recent_items) for u in range(split.num_users)]
    has_profile = np.array([len(r.long_term) > 0 for r in requests])
    source = config.interest.profile_source or config.profile.writer
    texts, prompt_version = None, None
    writer = profile_writer_of(source, config.profile.writer)
    if writer is not None:
        service = profiles if writer == profiles.config.profile.writer else profiles.with_writer(writer)
        if writer == "template":
            service.write_all(progress=False)  # deterministic and fast: written on demand
        texts = [p.text if p else "" for p in service.stored(requests)]  # no profile: masked below
        prompt_version = service.prompt_version
    vectors = long_term_vectors(source, [r.long_term for r in requests], np.arange(split.num_users), texts,
                                prompt_version, encoder, item_vectors, graph)
    context, names, values = user_context(dataset, split)
    return UserFeatures(np.where(has_profile[:, None], vectors, 0).astype(np.float32), has_profile, context,
                        [len(v) for v in values], names, values, time_lookup(config, split))


def time_lookup(config: RunConfig, split: Split) -> TimeLookup | None:
    """The users' interaction timestamps when the time features are on (a warning when there are none)."""
    if not config.interest.time_features:
        return None
    if split.timestamps is None:
        log.warning("interest.time_features is on but %s has no timestamps: the time inputs stay unknown",
                    split.dataset)
        return None
    return TimeLookup(split.sequences, split.timestamps)


def user_context(dataset: Dataset, split: Split) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """[num_users, F] category ids (0 = unknown), each feature's name and its values (id = position + 1):
    low-cardinality user attributes (e.g. gender, age, occupation) and each user's most frequent value of every
    interaction context column (e.g. device, platform), named `usual_<column>`."""
    columns: dict[str, pd.Series] = {}
    if dataset.users is not None:
        users = dataset.users.copy()
        users.index = users.index.astype(str)
        for name in users.columns:
            if users[name].nunique() <= MAX_CONTEXT_VALUES:
                columns[name] = users[name]
    events = dataset.interactions.events
    for name in dataset.interactions.context_columns:
        usual = events.dropna(subset=[name]).groupby(USER_ID)[name].agg(lambda v: v.value_counts().index[0])
        columns[f"usual_{name}"] = usual
    user_ids = pd.Index(split.user_ids.astype(str))
    features, vocabularies = [], []
    for values in columns.values():
        codes, categories = pd.factorize(values.astype(str))
        by_user = pd.Series(codes + 1, index=values.index.astype(str)).reindex(user_ids).fillna(0)
        features.append(by_user.to_numpy(dtype=np.int64))
        vocabularies.append([str(c) for c in categories])
    context = np.stack(features, axis=1) if features else np.zeros((len(user_ids), 0), dtype=np.int64)
    return context, list(columns), vocabularies



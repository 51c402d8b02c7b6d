"""One run of llmrec: a configuration and everything built from it, kept under `run_dir`.

    run_dir/config.yaml                 the resolved configuration
    run_dir/index/                      the embedded ChromaDB (unless a server is configured)
    run_dir/models/<name>/              model.json + weights.pt (+ checkpoints/ while training)
    run_dir/profiles.sqlite             long-term interest profiles (unless profile.store says elsewhere)
    run_dir/results/evaluation.json     metrics of every evaluated model, one record each
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from llmrec.config import RunConfig, save_config
from llmrec.data.registry import load_dataset
from llmrec.data.schema import Dataset
from llmrec.data.split import Split, hold_out_items, make_split
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError
from llmrec.eval.ann import ann_recall
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.index.chroma_index import ItemIndex
from llmrec.models.base import Model
from llmrec.models.interest import InterestModel
from llmrec.models.interest_inputs import build_user_features
from llmrec.models.lightgcn import LightGCN
from llmrec.models.long_term import GRAPH_SOURCES
from llmrec.models.registry import load_model, model_class
from llmrec.models.text_knn import TextKNN
from llmrec.models.user_features import UserFeatures
from llmrec.profiles.service import ProfileService
from llmrec.rerank.reranker import Reranker, RerankScorer
from llmrec.train.distributed import is_main_process, main_process_first

log = logging.getLogger(__name__)

LONG_TERM_GRAPH = "lightgcn-longterm"
"""Folder (under run_dir/models) of the LightGCN the graph long-term sources read."""


class Experiment:
    """Load data, embed items, index them, train and evaluate models, and recommend, for one RunConfig."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self._models: dict[str, Model] = {}

    @cached_property
    def dataset(self) -> Dataset:
        return load_dataset(self.config.data)

    @cached_property
    def split(self) -> Split:
        data = self.config.data
        split = make_split(self.dataset, data.split, data.temporal_valid_fraction, data.temporal_test_fraction)
        return hold_out_items(split, data.cold_item_fraction, self.config.seed) if data.cold_item_fraction else split

    @cached_property
    def encoder(self) -> ItemEncoder:
        return ItemEncoder(self.config.encoder)

    @cached_property
    def item_vectors(self) -> np.ndarray:
        """Text embeddings of the catalog as [num_items + 1, dim]; row 0 (padding) is zero."""
        catalog = self.dataset.catalog
        vectors = self.encoder.encode(catalog.texts(), catalog.text_template)
        return np.vstack([np.zeros((1, vectors.shape[1]), dtype=vectors.dtype), vectors])

    @cached_property
    def profiles(self) -> ProfileService:
        """Long-term interest profiles of this run's users (written by `profiles.write_all()`)."""
        return ProfileService.from_dataset(self.config, self.dataset, self.split, self.run_dir)

    @cached_property
    def index(self) -> ItemIndex:
        name = self.config.index.collection or collection_name(self.dataset.name, self.encoder.model_id)
        return ItemIndex(self.config.index, self.run_dir / "index", name)

    def save_config(self) -> Path:
        path = self.run_dir / "config.yaml"
        save_config(self.config, path)
        return path

    def build_index(self, rebuild: bool = False) -> ItemIndex:
        """Upsert every catalog item vector (or drop and recreate the collection with `rebuild`)."""
        ids = [str(i) for i in self.split.item_ids]
        if rebuild:
            self.index.rebuild(ids, self.item_vectors[1:])
        else:
            self.index.upsert(ids, self.item_vectors[1:])
        return self.index

    def model(self, name: str) -> Model:
        """A fitted model: in memory, else loaded from the run folder (with this run's settings that need no
        retraining, such as the device), else trained now."""
        if name not in self._models:
            folder = self.model_dir(name)
            if (folder / "model.json").is_file():
                self._models[name] = load_model(folder).use_settings(self.config)
            else:
                self._models[name] = self.train(name)
        return self._models[name]

    def train(self, name: str) -> Model:
        """Fit `name` on the training split (resuming from its checkpoint), save it and its training report."""
        cls = model_class(name)  # fails early on an unknown name
        started = time.perf_counter()
        with main_process_first():  # its inputs (embeddings, profiles) are written to shared stores
            model = cls.from_config(self.config, self)
        model = model.fit(self.split)
        self._models[name] = model
        if not is_main_process():
            return model
        folder = model.save(self.model_dir(name))
        report = {"model": name, "fit_s": time.perf_counter() - started}
        training = getattr(model, "report", None)
        if training is not None:
            report.update(training.to_dict())
        (folder / "training.json").write_text(json.dumps(report, indent=2))
        return model

    def reranker(self, device: str | None = None) -> Reranker:
        """The reranker over the `llmrec` model's candidates, on `device` (default `rerank.device`): loaded from
        the run folder, else trained now."""
        folder = self.model_dir(Reranker.name)
        model = self.model(InterestModel.name)
        if not isinstance(model, InterestModel):
            raise ConfigError(f"{self.model_dir(InterestModel.name)} holds no interest model")
        text_vectors, popularity = self.item_vectors, self.split.train_popularity()
        device = device or self.config.rerank.device
        if (folder / "model.json").is_file():
            return Reranker.load(folder, model, text_vectors, popularity, device)
        config = dataclasses.replace(self.config.rerank, device=device)
        started = time.perf_counter()
        reranker = Reranker(model, text_vectors, popularity, config, self.config.seed,
                            self.checkpoint_dir(Reranker.name))
        reranker.fit(self.split)
        if is_main_process():
            reranker.save(folder)
            report = {"model": Reranker.name, "fit_s": time.perf_counter() - started, **reranker.report.to_dict()}
            (folder / "training.json").write_text(json.dumps(report, indent=2))
        return reranker

    def evaluate_rerank(self) -> dict[str, dict[str, float]]:
        """Test metrics of `llmrec-retrieval-only` (the interest model's exact ranking) and `llmrec-rerank` (its
        top-N reranked); written to results/evaluation.json beside the other models."""
        evaluator = self.evaluator()
        results = {}
        for name, scorer in (("llmrec-retrieval-only", self.model(InterestModel.name)),
                             ("llmrec-rerank", RerankScorer(self.reranker()))):
            started = time.perf_counter()
            results[name] = evaluator.evaluate(scorer, desc=f"evaluate {name}")
            results[name]["eval_s"] = time.perf_counter() - started
        self._write_results(results)
        return results

    def evaluator(self) -> FullRankingEvaluator:
        """The run's full-ranking evaluator (with the item text vectors, for intra-list diversity)."""
        return FullRankingEvaluator(self.split, self.config.eval, self.item_vectors)

    def evaluate(self, names: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Test-set metrics for each model (trained first where needed); written to results/evaluation.json."""
        evaluator = self.evaluator()
        results = {}
        for name in names or self.config.models:
            model = self.model(name)
            started = time.perf_counter()
            results[name] = evaluator.evaluate(model, desc=f"evaluate {name}")
            results[name]["eval_s"] = time.perf_counter() - started
        self._write_results(results)
        return results

    def _write_results(self, results: dict[str, dict[str, float]]) -> None:
        """Merge `results` into run_dir/results/evaluation.json."""
        path = self.run_dir / "results" / "evaluation.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**existing, **results}, indent=2))

    def index_recall(self, max_queries: int = 500) -> float:
        """Recall@N of the Chroma index against exact search, for text-kNN user vectors of test users."""
        rows = np.random.default_rng(self.config.eval.seed).permutation(len(self.split.test))[:max_queries]
        queries = TextKNN(self.item_vectors).user_vectors(self.split.test.subset(rows).histories).numpy()
        ids = [str(i) for i in self.split.item_ids]
        return ann_recall(self.index, queries, ids, self.item_vectors[1:], self.config.eval.ann_recall_n)

    def long_term_graph(self) -> LightGCN:
        """LightGCN over the long-term interactions only (each user's training history before the profile
        cut-off), the long-term input of the `graph` profile sources: loaded from run_dir/models/
        lightgcn-longterm, else trained now (settings from `lightgcn`)."""
        folder = self.model_dir(LONG_TERM_GRAPH)
        if (folder / "model.json").is_file():
            return LightGCN.load(folder).use_settings(self.config)
        window = self.config.profile.recent_items
        long_terms = [items[:max(0, len(items) - window)] for items in self.split.train]
        graph = LightGCN(self.config.lightgcn, self.config.seed, self.checkpoint_dir(LONG_TERM_GRAPH))
        graph.fit(dataclasses.replace(self.split, train=long_terms))
        if is_main_process():
            graph.save(folder)
        return graph

    def user_features(self) -> UserFeatures:
        """The interest model's feature store: long-term vectors from `interest.profile_source` (profiles from
        this run's store, the long-term graph) and context."""
        graph = self.long_term_graph() if self.config.interest.profile_source in GRAPH_SOURCES else None
        return build_user_features(self.config, self.dataset, self.split, self.item_vectors, self.encoder,
                                 self.profiles, graph)

    def model_dir(self, name: str) -> Path:
        return self.run_dir / "models" / name

    def checkpoint_dir(self, name: str) -> Path:
        """Where model `name` keeps its training checkpoints (its folder's checkpoints/)."""
        return self.model_dir(name) / "checkpoints"


def collection_name(dataset: str, model_id: str) -> str:
    """A Chroma-safe collection name (3-512 chars of [a-zA-Z0-9._-], alphanumeric at both ends)."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"items-{dataset}-{model_id}").strip("-._")
    return slug[:200]

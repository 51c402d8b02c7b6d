"""InterestModel (`llmrec`): the user's long-term profile, recent items and context fused into one interest
vector; items are scored by dot product with the item tower's vectors (text + learned IDs), plus, with
`interest.content_weight`, a learned multiple of the frozen text similarity (`llmrec.models.content_score`).

No leakage: a user's profile is written from the training history before the cut-off `len(train) - L`. In
training, the profile is used only at positions whose target comes after that cut-off; predictions of earlier
items, which the profile mentions, are trained with the profile switched off (a per-position mask).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from llmrec.config import EvalConfig, InterestConfig, RunConfig
from llmrec.data.split import EvalCases, Split
from llmrec.device import resolve_device
from llmrec.errors import DataError, ModelNotTrainedError
from llmrec.models.base import BuildContext, Model, pad_histories
from llmrec.models.interest_net import InterestNet
from llmrec.models.new_item_offset import NewItemOffset, fit_new_item_offset
from llmrec.models.time_features import TimeLookup, pad_time_features, time_features
from llmrec.models.user_features import FILENAME as FEATURES_FILE
from llmrec.models.user_features import UserFeatures
from llmrec.train.losses import full_softmax_loss, sampled_softmax_loss
from llmrec.train.loop import Trainer, TrainingReport, checkpoint_fingerprint, seed_everything

_NEGATIVE_SMOOTHING = 0.75
"""Negatives are drawn in proportion to popularity ** 0.75 (word2vec's unigram smoothing), logQ-corrected."""


class InterestModel(Model):
    """The llmrec model. `window` is L, the number of recent items the profile leaves out (its cut-off); the
    sequence encoder reads the last `config.max_len` items (L when unset). The per-user inputs come from the
    feature store `features`, which is not part of the weights (`save` writes it to its own file)."""

    name = "llmrec"

    def __init__(self, item_vectors: np.ndarray, features: UserFeatures, window: int,
                 config: InterestConfig | None = None, seed: int = 42, checkpoint_dir: str | Path | None = None,
                 seen: np.ndarray | None = None) -> None:
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.features = features
        self.window = window
        self.config = config or InterestConfig()
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.seen = np.zeros(len(self.item_vectors), dtype=bool) if seen is None else np.asarray(seen, dtype=bool)
        self.max_len = self.config.max_len or window
        self.device = resolve_device(self.config.device, "interest.device")
        self.report: TrainingReport | None = None
        self.new_item_offset = 0.0
        """Added to the score of every item without an ID embedding, fit after training
        (`interest.calibrate_new_items`, `llmrec.models.new_item_offset`)."""
        self._fitted = False
        self.net = self._build_net()

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "InterestModel":
        return cls(context.item_vectors, context.user_features(), config.profile.recent_items, config.interest,
                   config.seed, context.checkpoint_dir(cls.name))

    def use_settings(self, config: RunConfig) -> "InterestModel":
        """The run's device and its policies for items without an ID embedding, `interest.new_item_boost` and
        `interest.new_item_neighbours` (the network is unchanged)."""
        self.set_new_item_boost(config.interest.new_item_boost)
        wanted = config.interest.new_item_neighbours, config.interest.new_item_temperature
        if wanted != (self.config.new_item_neighbours, self.config.new_item_temperature):
            self.set_new_item_neighbours(*wanted)
        return self.to(resolve_device(config.interest.device, "interest.device"))

    def to(self, device: torch.device) -> "InterestModel":
        """Score (and train) on `device` from now on; returns the model."""
        self.device = device
        self.config = dataclasses.replace(self.config, device=str(device))
        self.net.to(device)
        return self

    def _build_net(self) -> InterestNet:
        seed_everything(self.seed)
        return InterestNet(torch.from_numpy(self.item_vectors), torch.from_numpy(self.seen),
                           self.features.profile_dim, self.features.context_sizes, self.config,
                           self.max_len).to(self.device)

    def fit(self, split: Split) -> "InterestModel":
        self.seen = split.train_popularity() > 0
        self.net = self._build_net()
        self.fit_network(split)
        if self.config.calibrate_new_items:
            self.calibrate_new_items(split.valid)
        return self

    def fit_network(self, split: Split, *fingerprint: Any, keep_start: bool = False) -> "InterestModel":
        """Train `self.net` as it stands on `split` (the parameters that require gradients), with early stopping
        on validation NDCG@10 and checkpoints; `fit` calls it on a fresh network, domain fine-tuning
        (`llmrec.transfer`) on a transferred one carrying LoRA adapters. `fingerprint` values tell this run's
        checkpoints apart from those of runs that start from other weights; `keep_start` keeps the starting
        weights when no epoch validates better."""
        from llmrec.eval.evaluator import FullRankingEvaluator  # evaluator imports models.base

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        weights = (split.train_popularity().astype(np.float64) + 1) ** _NEGATIVE_SMOOTHING
        weights[0] = 0.0
        self._negative_probs = torch.as_tensor(weights / weights.sum(), dtype=torch.float32, device=self.device)
        timestamps = split.train_timestamps if self.config.time_features else None
        examples = training_examples(split.train, self.window, self.max_len, self.config.earlier_windows, timestamps)
        validator = FullRankingEvaluator(split, EvalConfig(ks=[10], seed=self.seed))
        self._fitted = True
        trainer = Trainer(self.net, self._loss, lambda epoch: self._batches(examples, epoch),
                          lambda: validator.evaluate(self, split.valid, desc="validate")["NDCG@10"],
                          self.config, self.checkpoint_dir, fingerprint=self._fingerprint(split, *fingerprint),
                          validate_first=keep_start)
        self.report = trainer.fit()
        return self

    def calibrate_new_items(self, cases: EvalCases, ndcg_budget: float | None = None) -> NewItemOffset | None:
        """Fit `new_item_offset` on `cases`: the maximum-likelihood offset, capped by the NDCG budget (None =
        `interest.new_item_ndcg_budget`; `llmrec.models.new_item_offset`); returns what was fit, or None (and the
        offset is 0) when no item is new."""
        budget = self.config.new_item_ndcg_budget if ndcg_budget is None else ndcg_budget
        boost = self.config.new_item_boost
        self.new_item_offset = 0.0
        self.set_new_item_boost(0.0)
        try:
            fit = fit_new_item_offset(self, cases, self._new_items(), budget)
        finally:
            self.set_new_item_boost(boost)
        self.new_item_offset = fit.value if fit else 0.0
        return fit

    def load_weights(self, state: dict[str, torch.Tensor]) -> "InterestModel":
        """Load the network's weights (a saved model's, or those transferred from another run by
        `llmrec.transfer`) and mark the model ready to score."""
        self.net.load_state_dict(state)
        self._fitted = True
        return self

    def interest(self, users: np.ndarray, histories: Sequence[np.ndarray], context: np.ndarray | None = None,
                 profiles: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(interest vectors [B, d], long-term weights [B]) after each history, on the CPU; `context` [B, F]
        replaces the users' stored context ids (see `UserFeatures.context_ids`), `profiles` [B, P] their
        long-term inputs (see `UserFeatures.rows`)."""
        vectors, long_weight = self._interest(users, histories, context, profiles)
        return vectors.cpu(), long_weight.cpu()

    def _interest(self, users: np.ndarray, histories: Sequence[np.ndarray], context: np.ndarray | None,
                  profiles: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`interest` on the model's device."""
        with torch.no_grad():
            vectors, long_weight = self.net(*self._query(users, histories, context, profiles))
        return vectors[:, -1], long_weight[:, -1]

    def components(self, users: np.ndarray, histories: Sequence[np.ndarray], context: np.ndarray | None = None,
                   profiles: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 3, d] (on the CPU) the short-term, long-term and context components of each interest vector (they
        add up to it, up to a constant bias), so an item's score splits into what each interest contributes."""
        with torch.no_grad():
            return self.net.components(*self._query(users, histories, context, profiles))[:, -1].cpu()

    def _query(self, users: np.ndarray, histories: Sequence[np.ndarray], context: np.ndarray | None,
               profiles: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        if not self._fitted:
            raise ModelNotTrainedError("llmrec: call fit() or load a trained model first")
        if self.net.training:  # eval() walks every module: a fifth of a millisecond per request
            self.net.eval()
        profiles, has_profile, stored_context = self.features.rows(users, profiles)
        context_ids = stored_context if context is None else torch.as_tensor(context, dtype=torch.long)
        times = self.features.time_rows(users, histories, self.max_len) if self.config.time_features else None
        query = (pad_histories(histories, self.max_len), profiles, has_profile, context_ids, times)
        return tuple(None if part is None else part.to(self.device) for part in query)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        interest, _ = self._interest(users, histories, None)
        return self.retrieval_queries(interest, histories) @ self._retrieval_table().T

    def set_new_item_boost(self, boost: float) -> None:
        """Change `interest.new_item_boost` (a ranking policy: the network is unchanged)."""
        self.config = dataclasses.replace(self.config, new_item_boost=boost)

    def set_new_item_neighbours(self, neighbours: int, temperature: float | None = None) -> None:
        """Change `interest.new_item_neighbours` (and `new_item_temperature`) on a trained model: the weights do
        not change, and `new_item_offset` stays the one fit for the setting at training (`calibrate_new_items`
        fits it again)."""
        temperature = self.config.new_item_temperature if temperature is None else temperature
        self.config = dataclasses.replace(self.config, new_item_neighbours=neighbours,
                                          new_item_temperature=temperature)
        self.net.items.set_neighbours(neighbours, temperature)

    def retrieval_table(self) -> torch.Tensor:
        """[num_items + 1, d (+ D) + 1]: the item vectors as the network scores them (the item tower's, then,
        with `interest.content_weight`, the frozen text vectors: `InterestNet.scored_items`) with one more
        coordinate, `new_item_offset` + `new_item_boost` for items without an ID embedding (never seen in
        training, or added after it: `put_items`) and 0 for the rest, so a dot product with `retrieval_queries`
        (exact or in ChromaDB's inner-product space) is the model's score plus both. On the CPU."""
        return self._retrieval_table().cpu()

    def _retrieval_table(self) -> torch.Tensor:
        """`retrieval_table` on the model's device."""
        self.net.eval()
        with torch.no_grad():
            table = self.net.scored_items(self.net.items.table())
        added = (self.new_item_offset + self.config.new_item_boost) * self._new_items().to(table.dtype)
        return torch.cat([table, added.unsqueeze(1)], dim=1)

    def _new_items(self) -> torch.Tensor:
        """[num_items + 1] bool (on the model's device): the items without an ID embedding; not the padding."""
        new = self.net.items.seen.squeeze(1) == 0
        new[0] = False
        return new

    def put_items(self, items: np.ndarray, text_vectors: np.ndarray) -> None:
        """Give `items` these text vectors without retraining. Indices past the item table are items added while
        serving (appended in order): they have no trained ID row, so they are scored from their text alone, like
        items never seen in training, and get the new-item boost. `state` still saves the trained items only."""
        self.net.items.put_texts(torch.as_tensor(items, dtype=torch.long), torch.as_tensor(text_vectors))

    def retrieval_queries(self, interest: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, d (+ D) + 1] (on `interest`'s device): the interest vectors [B, d] after `histories` as the network
        scores them (with `interest.content_weight`, the content vectors of the histories' recent items appended:
        `InterestNet.scored_queries`) and the coordinate that picks up `retrieval_table`'s boost."""
        with torch.no_grad():
            recent = pad_histories(histories, self.max_len).to(self.device)
            queries = self.net.scored_queries(interest.to(self.device), recent).to(interest.device)
        return torch.cat([queries, torch.ones(len(interest), 1, device=interest.device)], dim=1)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The network and the item side; the feature store is saved apart from them (`save`)."""
        params = {"window": self.window, "seed": self.seed, "config": dataclasses.asdict(self.config),
                  "new_item_offset": self.new_item_offset,
                  "profile_dim": self.features.profile_dim, "context_sizes": self.features.context_sizes}
        tensors = {f"net.{k}": v.cpu() for k, v in self.net.state_dict().items()}
        tensors.update({"item_vectors": torch.from_numpy(self.item_vectors), "seen": torch.from_numpy(self.seen)})
        return params, tensors

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor],
                   features: UserFeatures | None = None) -> "InterestModel":
        """The model of `state()` over the feature store `features`; models saved before the store moved out of
        the weights carry it in `tensors` instead."""
        if features is None:
            if "profiles" not in tensors:
                raise DataError(f"the interest model's user feature store ({FEATURES_FILE}) is missing")
            features = _features_in_weights(params, tensors)
        shape = (params.get("profile_dim", features.profile_dim), list(params["context_sizes"]))
        if (features.profile_dim, features.context_sizes) != shape:
            raise DataError(f"the user feature store (long-term width {features.profile_dim}, context sizes "
                            f"{features.context_sizes}) does not fit the model ({shape[0]}, {shape[1]})")
        # models saved before the frozen-content score existed have none (it changes the network's parameters)
        config = InterestConfig(**{"content_weight": None, **params["config"], "device": "cpu"})
        model = cls(tensors["item_vectors"].numpy(), features, params["window"], config, params["seed"],
                    seen=tensors["seen"].numpy())
        model.new_item_offset = params.get("new_item_offset", 0.0)  # models saved before it: none
        return model.load_weights({k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")})

    def save(self, folder: str | Path) -> Path:
        """Write `model.json`, `weights.pt` and the feature store (`users.safetensors`) into `folder`."""
        folder = super().save(folder)
        self.features.save(folder / FEATURES_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "InterestModel":
        """A model written by `save`, with its feature store."""
        _, params, tensors = cls.read_saved(folder)
        path = Path(folder) / FEATURES_FILE
        return cls.from_state(params, tensors, UserFeatures.load(path) if path.is_file() else None)

    def _loss(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`net` is `self.net` or its DDP wrapper."""
        profiles, has_profile, context = (t.to(self.device) for t in self.features.rows(batch["users"].numpy()))
        batch = {key: value.to(self.device) for key, value in batch.items()}
        text_table = self.net.items.text_table()
        table = self.net.items.table(text_table)
        has_profile = has_profile.unsqueeze(1) & batch["profile_mask"]
        if self.config.profile_dropout > 0:
            has_profile = has_profile & (torch.rand(len(has_profile), 1, device=self.device)
                                         >= self.config.profile_dropout)
        hidden, _ = net(batch["inputs"], profiles, has_profile, context, times=batch.get("times"), table=table,
                        scored=True)
        targets = batch["targets"]
        keep = targets != 0
        hidden, targets = hidden[keep], targets[keep]
        negatives = None
        if self.config.loss == "sampled-softmax":
            negatives = torch.multinomial(self._negative_probs, self.config.num_negatives, replacement=True)
        loss = self._next_item_loss(hidden, self.net.scored_items(table), targets, negatives)
        if self.config.text_loss_weight and self.config.use_ids:
            text_loss = self._next_item_loss(hidden, self.net.scored_items(text_table), targets, negatives)
            loss = loss + self.config.text_loss_weight * text_loss
        return loss

    def _next_item_loss(self, hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                        negatives: torch.Tensor | None) -> torch.Tensor:
        """Full softmax when `negatives` is None, else sampled softmax with logQ correction."""
        if negatives is None:
            return full_softmax_loss(hidden, table, targets)
        return sampled_softmax_loss(hidden, table, targets, negatives, self._negative_probs.clamp_min(1e-12).log())

    def _batches(self, examples: dict[str, torch.Tensor], epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        order = np.random.default_rng(self.seed + epoch).permutation(len(examples["users"]))
        for start in range(0, len(order), self.config.batch_size):
            rows = torch.as_tensor(order[start:start + self.config.batch_size])
            yield {key: value[rows] for key, value in examples.items()}

    def _fingerprint(self, split: Split, *extra: Any) -> str:
        features = hashlib.sha256(self.features.profiles.tobytes() + self.features.context.tobytes()).hexdigest()
        return checkpoint_fingerprint(self.name, self.config, self.seed, split, self.window, features, *extra)


def training_examples(train: Sequence[np.ndarray], window: int, max_len: int, earlier_windows: int,
                      timestamps: Sequence[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Windows of (inputs, targets) left-padded to `max_len`, with `profile_mask`: True at the positions whose
    target comes after the user's profile cut-off (`len(items) - window`), the only ones that may use the
    profile; with `timestamps` (of `train`), also the inputs' time feature ids as `times`. Per user: the window
    ending at the last training item, and up to `earlier_windows` windows before it."""
    users, inputs, targets, masks, times = [], [], [], [], []
    for user, items in enumerate(train):
        features = time_features(timestamps[user]) if timestamps is not None else None
        cutoff = max(0, len(items) - window)
        end = len(items)
        for _ in range(earlier_windows + 1):
            start = max(1, end - max_len)
            if end - start < 1:
                break
            users.append(user)
            inputs.append(items[start - 1:end - 1])
            targets.append(items[start:end])
            masks.append((np.arange(start, end) >= cutoff).astype(np.int64))
            if features is not None:
                times.append(features[start - 1:end - 1])
            end = start
    examples = {"users": torch.as_tensor(users, dtype=torch.long), "inputs": pad_histories(inputs, max_len),
                "targets": pad_histories(targets, max_len), "profile_mask": pad_histories(masks, max_len).bool()}
    if timestamps is not None:
        examples["times"] = pad_time_features(times, max_len)
    return examples


def _features_in_weights(params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> UserFeatures:
    """The feature store of a model saved before it moved out of `weights.pt`."""
    return UserFeatures(tensors["profiles"].numpy(), tensors["has_profile"].numpy(), tensors["context"].numpy(),
                        list(params["context_sizes"]), list(params.get("context_names", [])),
                        list(params.get("context_values", [])),
                        TimeLookup.from_tensors(tensors) if "time_lengths" in tensors else None)

"""Zero-shot transfer: an interest model for a target run (its own catalog, split, item text vectors, profiles and
context) whose network starts from the trained `llmrec` network of a base run.

Every tensor of the target network takes the base's tensor of the same name and shape:

- `items.text_proj`: the projection of the item text embeddings (both runs must use the same text encoder);
- `short_term.*`: positions, attention blocks (or GRU) and norm; the target keeps the base's `max_len`, so the
  position table fits;
- `long_term.*`: the profile MLP;
- `fusion.*`: gate or attention, and the output layer;
- `content.log_weight`: the weight of the frozen-content score (`interest.content_weight`), which scores any
  catalog's items by their text as it scored the base's;
- `context.<f>`: only for a context feature the base has too, under the same name with the same values;
- `short_term.gap`, `hour`, `weekday` (the target's `interest.time_features`): the base's where it has them.

What is domain-specific starts empty: the base's item ID embeddings (another catalog) are left behind and the
target model scores items by their text alone (`use_ids=False`, what the item tower does for cold items anyway);
the embedding of a context feature (or time feature) the base does not have is new and zero-initialised, as in
`InterestNet`, so it adds nothing until it is trained. The architecture (hidden size, encoder, fusion, which
parts are used) is the base's; how to train (learning rate, epochs, loss, negatives, dropout, `profile_source`,
`time_features`) is the target's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec.config import InterestConfig, RunConfig, load_config
from llmrec.errors import ConfigError
from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.models.registry import load_model
from llmrec.models.user_features import UserFeatures

ARCHITECTURE = ("hidden_size", "short_term", "num_blocks", "num_heads", "fusion", "sum_weight", "use_profile",
                "use_recent", "use_context", "content_weight")
"""InterestConfig fields the target model takes from the base (with its `max_len`), so the shapes and the
forward pass match; the other fields (how to train) are the target's."""

TIME_MODULES = ("short_term.gap.", "hour.", "weekday.")
"""Network tensors of the time features, which a base trained without them lacks."""


@dataclass(frozen=True)
class BaseRun:
    """A trained run whose interest model is transferred: its folder, configuration, model and the SHA-256 of the
    model's weights file (an adapter records it and refuses a base that changed since)."""

    run_dir: Path
    config: RunConfig
    model: InterestModel
    digest: str

    @classmethod
    def load(cls, run_dir: str | Path) -> "BaseRun":
        """The run folder's config.yaml and trained `llmrec` model; ConfigError when either is missing."""
        folder = Path(run_dir).resolve()
        model_dir = folder / "models" / InterestModel.name
        if not (model_dir / "model.json").is_file():
            raise ConfigError(f"no trained interest model in {model_dir}; train the base run first "
                              "(`llmrec train -m llmrec`)")
        if not (folder / "config.yaml").is_file():
            raise ConfigError(f"{folder} is not an llmrec run folder (no config.yaml)")
        model = load_model(model_dir)
        if not isinstance(model, InterestModel):
            raise ConfigError(f"{model_dir} holds no interest model")
        digest = hashlib.sha256((model_dir / "weights.pt").read_bytes()).hexdigest()
        return cls(folder, load_config(folder / "config.yaml", [f"run_dir={folder}"]), model, digest)


@dataclass
class Transferred:
    """A target model built from a base network: `copied` names the network tensors taken from the base, `fresh`
    those that start as initialised (the new context embeddings)."""

    model: InterestModel
    copied: list[str]
    fresh: list[str]

    @property
    def new_modules(self) -> list[str]:
        """The modules holding `fresh` tensors (e.g. `context.0`), which fine-tuning trains in full."""
        return sorted({key.rpartition(".")[0] for key in self.fresh})


def transfer(base: InterestModel, item_vectors: np.ndarray, features: UserFeatures, window: int,
             config: InterestConfig, seed: int = 42, checkpoint_dir: str | Path | None = None) -> Transferred:
    """A model of the target's items (`item_vectors` [num_items + 1, dim]) and users (`features`, profile cut-off
    `window`) with `config`'s training settings and the base's architecture, whose network holds the base's
    weights as the module docstring says; ready to score (zero-shot) or to fine-tune."""
    target_config = dataclasses.replace(config, **{name: getattr(base.config, name) for name in ARCHITECTURE},
                                        max_len=base.max_len, use_ids=False)
    model = InterestModel(item_vectors, features, window, target_config, seed, checkpoint_dir)
    source, state = base.net.state_dict(), model.net.state_dict()
    matches = _shared_context(base.features, features)
    copied, fresh = [], []
    for key, tensor in state.items():
        origin = _base_key(key, matches)
        if origin is None or (origin.startswith(TIME_MODULES) and origin not in source):
            fresh.append(key)
        elif origin in source and source[origin].shape == tensor.shape:
            state[key] = source[origin]
            copied.append(key)
        else:
            found = tuple(source[origin].shape) if origin in source else "nothing"
            raise ConfigError(f"cannot transfer {key}: the target network needs shape {tuple(tensor.shape)}, the "
                              f"base has {found} (do both runs use the same text encoder and a long-term "
                              "input of the same kind, interest.profile_source?)")
    model.load_weights(state)
    return Transferred(model, copied, fresh)


def transfer_to(base: BaseRun, target: Experiment, checkpoint_dir: str | Path | None = None) -> Transferred:
    """`transfer` onto the target run: its item text vectors, and its user features as its own `llmrec` model
    would get them (`Experiment.user_features`: profiles from its store and `profile.preload`, context)."""
    if base.config.encoder.model != target.config.encoder.model:
        raise ConfigError(f"the base run embeds item texts with {base.config.encoder.model}, the target with "
                          f"{target.config.encoder.model}; transfer needs the same text encoder "
                          f"(set encoder.model={base.config.encoder.model})")
    config = target.config
    return transfer(base.model, target.item_vectors, target.user_features(), config.profile.recent_items,
                    config.interest, config.seed, checkpoint_dir)


def _base_key(key: str, context_matches: dict[int, int]) -> str | None:
    """The base network's tensor that the target's tensor `key` takes; None for a new context embedding."""
    if not key.startswith("context."):
        return key
    _, feature, rest = key.split(".", 2)
    base_feature = context_matches.get(int(feature))
    return None if base_feature is None else f"context.{base_feature}.{rest}"


def _shared_context(base: UserFeatures, target: UserFeatures) -> dict[int, int]:
    """Target context feature -> the base feature it is (same name and the same values in the same order)."""
    by_name = {name: f for f, name in enumerate(base.context_names)}
    return {f: by_name[name] for f, name in enumerate(target.context_names)
            if name in by_name and base.context_values[by_name[name]] == target.context_values[f]}

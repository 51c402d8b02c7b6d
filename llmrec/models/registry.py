"""Models by name, and loading any saved model from its folder."""

from __future__ import annotations

from pathlib import Path

from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.interest import InterestModel
from llmrec.models.item_knn import ItemKNN
from llmrec.models.lightgcn import LightGCN
from llmrec.models.popularity import Popularity
from llmrec.models.sasrec import SASRec
from llmrec.models.text_knn import TextKNN
from llmrec.models.user_knn import UserKNN

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, TextKNN, ItemKNN, UserKNN, LightGCN, SASRec, InterestModel)
}


def model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


def load_model(folder: str | Path) -> Recommender:
    """Load a model written by `Recommender.save` (`folder` as a str or Path)."""
    name, params, tensors = Recommender.read_saved(folder)
    return model_class(name).from_state(params, tensors)

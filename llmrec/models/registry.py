"""Models by name, and loading any saved model from its folder. Each model class builds itself from its own
config section (`Model.from_config`)."""

from __future__ import annotations

from pathlib import Path

from llmrec.errors import ConfigError
from llmrec.models.base import Model
from llmrec.models.interest import InterestModel
from llmrec.models.item_knn import ItemKNN
from llmrec.models.lightgcn import LightGCN
from llmrec.models.popularity import Popularity
from llmrec.models.sasrec import SASRec
from llmrec.models.text_knn import TextKNN
from llmrec.models.user_knn import UserKNN

MODELS: dict[str, type[Model]] = {
    cls.name: cls for cls in (Popularity, TextKNN, ItemKNN, UserKNN, LightGCN, SASRec, InterestModel)
}


def model_class(name: str) -> type[Model]:
    """The model class registered as `name`; ConfigError naming the known ones for any other name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


def load_model(folder: str | Path) -> Model:
    """Load a model written by `Model.save` (`folder` as a str or Path), on the CPU; `use_settings(config)` then
    moves it to the run's device."""
    return model_class(Model.saved_name(folder)).load(folder)

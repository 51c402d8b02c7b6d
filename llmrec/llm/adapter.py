"""A tuned LLM on disk: a LoRA adapter folder with its provenance (`llmrec profile tune` writes one).

    <adapter>/adapter_config.json, adapter_model.safetensors   the peft adapter (transformers backend)
    <adapter>/adapter.gguf                                      the same adapter for llama.cpp (`lora_path`)
    <adapter>/manifest.json                                     provenance: base model digest, dataset, prompt,
                                                                reward, samples, steps, rewards seen
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError

MANIFEST = "manifest.json"
GGUF_FILE = "adapter.gguf"
PEFT_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class AdapterManifest:
    """What a tuned writer is and how it was made."""

    base_model: str
    """The base model's id (`llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf`)."""
    base_sha256: str
    dataset: str
    prompt: str
    """The chat template (e.g. `profile/tuned.v1`) the adapter was trained to answer."""
    reward: str
    teacher_prompt: str
    """The template the sampling writer answered when the training samples were drawn."""
    tuning_users: int
    """Users whose samples were read (the drawn `profile_tune.users`, or fewer when training began early)."""
    check_users: int
    """How many users were set aside for checks when the tuning users were drawn (`profile_tune.check_users`):
    a check of this adapter must use the same number, or its users could overlap the tuning users."""
    samples_per_user: int
    examples: int
    steps: int
    lora: dict[str, Any] = field(default_factory=dict)
    rewards: dict[str, float] = field(default_factory=dict)
    """Mean reward of all samples, of the kept (best) samples and of the template profile on the tuning users."""
    created: str = ""
    grammar: bool = False
    """Whether the samples were decoded with the profile grammar; the tuned writer then decodes with it too."""
    teacher_model: str = ""
    """The writer that drew the samples: the base model, or a tuned writer (`...+lora:<dataset>@<digest>`) for a
    later round of expert iteration; empty in manifests written before it was recorded."""

    method: str = "sft"
    """`sft` (expert iteration on the best samples) or `dpo` (preference pairs): `profile_tune.method`."""
    init_adapter: str = ""
    """The adapter training started from (`...+lora:<name>@<digest>`), empty for a fresh one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoRAAdapter:
    """A loaded adapter folder."""

    path: Path
    manifest: AdapterManifest

    @classmethod
    def load(cls, path: str | Path) -> "LoRAAdapter":
        """Read an adapter folder; ConfigError naming what is missing."""
        folder = Path(path).expanduser()
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise ConfigError(f"adapter {folder} is not a tuned model folder (no {MANIFEST}); "
                              "make one with `llmrec profile tune`")
        try:
            values = json.loads(manifest.read_text(encoding="utf-8"))
            return cls(folder, AdapterManifest(**values))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"adapter {manifest} is not a valid manifest ({exc})") from exc

    @property
    def gguf(self) -> Path:
        """The adapter in llama.cpp's format; ConfigError when it was not exported."""
        path = self.path / GGUF_FILE
        if not path.is_file():
            raise ConfigError(f"adapter {path} is missing (the llamacpp backend needs it)")
        return path

    @property
    def peft_weights(self) -> Path:
        """The adapter's peft weights (what training can start from); ConfigError when the folder has none (a
        committed adapter may carry only its GGUF)."""
        path = self.path / PEFT_WEIGHTS
        if not path.is_file():
            raise ConfigError(f"adapter {self.path} has no {PEFT_WEIGHTS}: training starts from the peft weights "
                              "that `llmrec profile tune` writes beside adapter.gguf")
        return path

    @property
    def digest(self) -> str:
        """Twelve hex digits of the adapter weights' SHA-256: part of the model id of everything it writes."""
        weights = self.path / PEFT_WEIGHTS
        source = weights if weights.is_file() else self.gguf
        return file_sha256(source)[:12]

    @property
    def prompt_template(self) -> tuple[str, str, int]:
        """(kind, name, version) of the chat template the adapter answers, from `<kind>/<name>.v<version>`."""
        kind, _, rest = self.manifest.prompt.partition("/")
        name, _, version = rest.rpartition(".v")
        return kind, name, int(version)

    def model_id(self, base_model_id: str) -> str:
        """The id of the tuned writer: the base model's id plus the adapter's name and digest."""
        return f"{base_model_id}+lora:{self.path.name}@{self.digest}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

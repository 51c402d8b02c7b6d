"""LoRA fine-tuning of a transferred interest model on the target domain, and adapters on disk.

peft attaches rank-8 LoRA adapters (`lora_alpha` 16) to the network's `lora_targets` (text projection, profile
MLP, fusion) and trains the new context embeddings in full (`modules_to_save`); every transferred weight stays
frozen. The short-term encoder's layers get no adapters: `nn.TransformerEncoderLayer`'s inference fast path
(taken with an even number of heads) reads its linear weights directly, so an adapter there would be trained
but skipped when scoring, `nn.MultiheadAttention` never calls its `out_proj`, and a GRU has no `nn.Linear`.

Training is `InterestModel.fit_network`: the model's own loss, batches and negatives, early stopping on the
target's validation NDCG@10, checkpoints; on all the target's training users or a seeded `fraction` of them
(validation and test cases unchanged).

An adapter is a small folder, `RUN_DIR/adapters/<name>/` of the target run: peft's `save_pretrained` output
(adapter_config.json, adapter_model.safetensors) and `transfer.json` (the base run, the SHA-256 of its model's
weights, the target configuration, the fraction, which tensors were transferred, the training report). Loading
repeats the transfer from the base run and applies the adapter.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from peft import LoraConfig, PeftModel, get_peft_model

from llmrec.data.split import Split
from llmrec.errors import ConfigError
from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.models.interest_net import lora_targets
from llmrec.train.loop import TrainingReport
from llmrec.transfer.zero_shot import BaseRun, Transferred, transfer_to

RANK = 8
ALPHA = 16
ADAPTERS = "adapters"
"""Adapters live in this folder of the target run, one subfolder each."""
META = "transfer.json"


@dataclass
class AdapterRun:
    """A fine-tuned adapter: the adapted model, its folder and size on disk, and the training report."""

    model: InterestModel
    folder: Path
    size_mb: float
    report: TrainingReport


def check_fraction(fraction: float) -> float:
    """`fraction` when it is a share of users to train on (0 < fraction <= 1), else ConfigError."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], the share of the target's training users to fine-tune on; "
                          f"got {fraction} (--zero-shot evaluates the transferred model without training)")
    return fraction


def sample_users(split: Split, fraction: float, seed: int) -> Split:
    """`split` with the training sequences of a seeded `fraction` of the users who have any (at least one user)
    kept and the others' emptied; validation and test cases are unchanged."""
    if check_fraction(fraction) == 1:
        return split
    users = np.flatnonzero([len(items) > 0 for items in split.train])
    chosen = np.random.default_rng(seed).choice(users, size=max(1, round(fraction * len(users))), replace=False)
    keep = np.zeros(split.num_users, dtype=bool)
    keep[chosen] = True
    train = [items if keep[u] else items[:0] for u, items in enumerate(split.train)]
    timestamps = (None if split.train_timestamps is None
                  else [t if keep[u] else t[:0] for u, t in enumerate(split.train_timestamps)])
    return dataclasses.replace(split, train=train, train_timestamps=timestamps)


def lora_config(transferred: Transferred) -> LoraConfig:
    """Rank-8 LoRA on the network's `lora_targets`; the new context embeddings are trained in full."""
    return LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=lora_targets(transferred.model.net),
                      modules_to_save=transferred.new_modules or None)


def finetune(transferred: Transferred, split: Split, fraction: float = 1.0, *fingerprint: Any) -> PeftModel:
    """Attach LoRA adapters to `transferred.model`'s network (in place) and train them on `fraction` of the
    `split`'s training users; returns the peft wrapper (for `save_adapter`). `fingerprint` values (e.g. the base
    weights' digest) tell checkpoints of different starting networks apart."""
    model = transferred.model
    config = lora_config(transferred)
    adapted = get_peft_model(model.net, config)
    model.net = adapted.get_base_model()
    settings = ["lora", RANK, ALPHA, sorted(config.target_modules), transferred.new_modules, fraction]
    model.fit_network(sample_users(split, fraction, model.seed), *settings, *fingerprint, keep_start=True)
    return adapted


def save_adapter(adapted: PeftModel, folder: str | Path, meta: dict[str, Any]) -> float:
    """Write the adapter weights and `meta` (as transfer.json) into `folder`; returns the folder's size in MB."""
    folder = Path(folder)
    adapted.save_pretrained(folder)
    (folder / META).write_text(json.dumps(meta, indent=2))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2 ** 20


def apply_adapter(transferred: Transferred, folder: str | Path, merge: bool = False) -> InterestModel:
    """`transferred.model` with the adapter saved in `folder`, merged into the weights or kept beside them (the
    scores are the same either way)."""
    model = transferred.model
    adapted = PeftModel.from_pretrained(model.net, folder)
    model.net = adapted.merge_and_unload() if merge else adapted.get_base_model()
    return model


def adapt(base: BaseRun, target: Experiment, name: str, fraction: float = 1.0) -> AdapterRun:
    """Transfer the base run's model to the target run, fine-tune it with LoRA on `fraction` of the target's
    training users and save the adapter as `target.run_dir/adapters/<name>` (checkpoints go to its
    `checkpoints/` while training, so an interrupted run resumes, and are removed once it is saved)."""
    check_fraction(fraction)
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"adapter name must be a plain folder name, got {name!r}")
    folder = target.run_dir / ADAPTERS / name
    transferred = transfer_to(base, target, folder / "checkpoints")
    adapted = finetune(transferred, target.split, fraction, base.digest)
    report = transferred.model.report
    assert report is not None  # set by fit_network
    meta = {"base_run": str(base.run_dir), "base_model_sha256": base.digest, "fraction": fraction,
            "copied": transferred.copied, "fresh": transferred.fresh, "training": report.to_dict(),
            "target_config": target.config.to_dict()}
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    size = save_adapter(adapted, folder, meta)
    return AdapterRun(transferred.model, folder, size, report)


def adapter_folder(run_dir: str | Path, adapter: str | Path) -> Path:
    """`adapter` as an adapter folder, else as the name of one under `run_dir/adapters/`."""
    path = Path(adapter)
    folder = path if (path / META).is_file() else Path(run_dir) / ADAPTERS / str(adapter)
    if not (folder / META).is_file():
        raise ConfigError(f"no adapter {str(adapter)!r}: neither {path} nor {folder} holds {META}; "
                          "train one with `llmrec finetune`")
    return folder


def load_adapter(target: Experiment, adapter: str | Path, merge: bool = False) -> InterestModel:
    """The target run's interest model from an adapter (a folder, or a name under the run's `adapters/`): the
    base run's model named in its transfer.json, transferred to `target` and adapted."""
    folder = adapter_folder(target.run_dir, adapter)
    meta = json.loads((folder / META).read_text())
    base = BaseRun.load(meta["base_run"])
    if base.digest != meta["base_model_sha256"]:
        raise ConfigError(f"the model of base run {base.run_dir} changed since adapter {folder} was trained on it; "
                          "fine-tune again")
    trained_for = meta["target_config"]["data"]["name"]
    if trained_for != target.config.data.name:
        raise ConfigError(f"adapter {folder} was trained for dataset {trained_for}, not {target.config.data.name}")
    return apply_adapter(transfer_to(base, target), folder, merge)

"""Adapt a trained interest model to a new domain: zero-shot transfer of its network to a target run
(`zero_shot`), LoRA fine-tuning on the target's training users and adapters on disk (`lora`).

    base = BaseRun.load("runs/movies")                     # a run with a trained `llmrec` model
    target = Experiment(load_config("shop.yaml"))          # the new domain: its data, profiles, split
    zero_shot = transfer_to(base, target).model            # scores the target's items by their text
    run = adapt(base, target, "from-movies", fraction=0.1)  # -> runs/shop/adapters/from-movies/
    model = load_adapter(target, "from-movies")            # what `Recommender.load(..., adapter=...)` serves
"""

from llmrec.transfer.lora import (AdapterRun, adapt, adapter_folder, apply_adapter, check_fraction, finetune,
                                  load_adapter, lora_config, sample_users, save_adapter)
from llmrec.transfer.zero_shot import ARCHITECTURE, BaseRun, Transferred, transfer, transfer_to

__all__ = ["ARCHITECTURE", "AdapterRun", "BaseRun", "Transferred", "adapt", "adapter_folder", "apply_adapter",
           "check_fraction", "finetune", "load_adapter", "lora_config", "sample_users", "save_adapter", "transfer",
           "transfer_to"]

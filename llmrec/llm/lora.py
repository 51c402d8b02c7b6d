"""LoRA fine-tuning of a GGUF chat model with transformers + peft, exported back to GGUF for llama.cpp.

transformers reads the GGUF weights (dequantised to fp32), peft adds the adapter, a plain loop trains it on
(chat prompt, answer) pairs with the loss on the answer tokens only (`train_lora`) or on (prompt, preferred,
rejected) triples with the DPO loss (`train_dpo`), and llama.cpp's own converter
(`convert_lora_to_gguf.py`, from the llama-cpp-python source distribution; `scripts/bootstrap.sh` unpacks it)
writes the adapter in the format `Llama(lora_path=...)` loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from llmrec.config import ProfileTuneConfig
from llmrec.device import resolve_device
from llmrec.errors import ConfigError
from llmrec.llm.adapter import GGUF_FILE, MANIFEST, AdapterManifest
from llmrec.llm.base import Message

CONVERTER_ENV = "LLMREC_LLAMACPP_CONVERT"
DEFAULT_CONVERTER_DIR = Path("~/.cache/llmrec/llama.cpp-convert")
Example = tuple[list[Message], str]
"""A chat prompt and the answer the model should learn to give."""
Pair = tuple[list[Message], str, str]
"""A chat prompt, the answer to prefer and the answer to reject."""


def load_gguf_model(gguf: Path, device: str = "auto") -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and fp32 model from a GGUF file (transformers dequantises the weights; needs `gguf`)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"transformers cannot load {gguf} ({type(exc).__name__}: {exc})") from None
    return tokenizer, model.to(resolve_device(device))


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example,
                   max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end-of-turn, and labels that mask the prompt (-100); cut to `max_length`
    from the left, so the answer is always kept."""
    messages, answer = example
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the answer turn in a way that changes the prompt")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[-max_length:]
    labels = ([-100] * len(prompt_ids) + answer_ids)[-max_length:]
    return ids, labels


def train_lora(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example],
               config: ProfileTuneConfig, checkpoint_dir: Path, seed: int, progress: bool = True,
               init_adapter: Path | None = None) -> tuple[PeftModel, int]:
    """Supervised LoRA on `examples` (the loss on the answer tokens); returns the adapted model and its number of
    optimiser updates. See `_optimise` for the schedule and checkpoints."""
    peft_model = trainable_adapter(model, config, seed, init_adapter)
    device = next(peft_model.parameters()).device

    def loss_of(index: int) -> torch.Tensor:
        ids, labels = encode_example(tokenizer, examples[index], config.max_length)
        return peft_model(input_ids=torch.tensor([ids], device=device),
                          labels=torch.tensor([labels], device=device)).loss

    steps = _optimise(peft_model, len(examples), loss_of, config, checkpoint_dir, seed, progress, "LoRA training")
    return peft_model, steps


def train_dpo(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
              config: ProfileTuneConfig, checkpoint_dir: Path, seed: int, progress: bool = True,
              init_adapter: Path | None = None) -> tuple[PeftModel, int]:
    """Direct preference optimisation (Rafailov et al. 2023) of a LoRA adapter on (prompt, preferred, rejected)
    pairs: loss = -log sigmoid(beta * ((log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-)))), with the
    adapter as it starts (`init_adapter`, or the base model) as the reference. The reference's log-likelihoods are
    computed once, before training, and kept beside the checkpoints so a resumed run uses the same ones."""
    peft_model = trainable_adapter(model, config, seed, init_adapter)
    reference = _reference_logprobs(peft_model, tokenizer, pairs, config.max_length,
                                    checkpoint_dir / "reference.json", progress)

    def loss_of(index: int) -> torch.Tensor:
        messages, preferred, rejected = pairs[index]
        margin = ((answer_logprob(peft_model, tokenizer, (messages, preferred), config.max_length)
                   - reference[index][0])
                  - (answer_logprob(peft_model, tokenizer, (messages, rejected), config.max_length)
                     - reference[index][1]))
        return -torch.nn.functional.logsigmoid(config.dpo_beta * margin)

    steps = _optimise(peft_model, len(pairs), loss_of, config, checkpoint_dir, seed, progress, "DPO training")
    return peft_model, steps


def trainable_adapter(model: PreTrainedModel, config: ProfileTuneConfig, seed: int,
                      init_adapter: Path | None = None) -> PeftModel:
    """`model` with a trainable LoRA: a fresh one shaped by `config` (seeded), or the peft adapter saved in
    `init_adapter` (a folder with peft weights: `LoRAAdapter.peft_weights`)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    if init_adapter is None:
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.target_modules), task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)


def answer_logprob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, example: Example,
                   max_length: int) -> torch.Tensor:
    """log p(answer | prompt) under `model`: the sum of the answer tokens' log-probabilities (end of turn
    included), prompt cut as in `encode_example`."""
    ids, labels = encode_example(tokenizer, example, max_length)
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1]
    targets = torch.tensor(labels[1:], device=device)
    answer = targets != -100
    return torch.log_softmax(logits[answer], dim=-1).gather(1, targets[answer, None]).sum()


def _reference_logprobs(model: PeftModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
                        max_length: int, path: Path, progress: bool) -> list[tuple[float, float]]:
    """log ref(preferred), log ref(rejected) per pair: read from `path` when it holds these pairs' values, or
    computed with `model` as it is now (dropout off) and written there."""
    key = hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("pairs_sha256") == key:
            return [tuple(v) for v in saved["values"]]
    model.eval()
    values = []
    with torch.no_grad():
        for messages, preferred, rejected in tqdm(pairs, unit="pair", desc="reference log-likelihoods",
                                                   disable=not progress):
            values.append((answer_logprob(model, tokenizer, (messages, preferred), max_length).item(),
                           answer_logprob(model, tokenizer, (messages, rejected), max_length).item()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pairs_sha256": key, "values": values}), encoding="utf-8")
    return values


def _optimise(model: PeftModel, count: int, loss_of: Callable[[int], torch.Tensor], config: ProfileTuneConfig,
              checkpoint_dir: Path, seed: int, progress: bool, desc: str) -> int:
    """AdamW on the adapter over `config.epochs` seeded passes of the items 0..count-1 (one item a step,
    `config.grad_accumulation` steps an update); a checkpoint after every update lets a killed run resume.
    Returns the number of updates."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    order = [i for epoch in range(config.epochs) for i in random.Random(seed + epoch).sample(range(count), count)]
    done = _resume(model, optimizer, checkpoint_dir)
    model.train()
    with tqdm(total=len(order), initial=done, unit="seq", desc=desc, disable=not progress) as bar:
        for position in range(done, len(order)):
            loss = loss_of(order[position])
            (loss / config.grad_accumulation).backward()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (position + 1) % config.grad_accumulation == 0 or position + 1 == len(order):
                optimizer.step()
                optimizer.zero_grad()
                _checkpoint(model, optimizer, checkpoint_dir, position + 1)
    model.eval()
    return math.ceil(len(order) / config.grad_accumulation)


def export_gguf(model: PeftModel, out_dir: Path, manifest: AdapterManifest) -> Path:
    """Write the adapter folder: peft files, `adapter.gguf` (llama.cpp's converter) and `manifest.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    base = out_dir / "base-config"  # the converter reads the base model's shape and architecture from it
    config = model.get_base_model().config.to_dict()
    config.pop("quantization_config", None)  # transformers notes the GGUF source; the weights are fp32 now
    config["architectures"] = [type(model.get_base_model()).__name__]
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    script = converter_script()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(script.parent / "gguf-py"), str(script.parent)])}
    command = [sys.executable, str(script), str(out_dir), "--base", str(base), "--outtype", "f16",
               "--outfile", str(out_dir / GGUF_FILE)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"convert_lora_to_gguf.py failed:\n{result.stderr[-2000:]}")
    (out_dir / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=1) + "\n", encoding="utf-8")
    return out_dir


def converter_script() -> Path:
    """llama.cpp's `convert_lora_to_gguf.py`: in $LLMREC_LLAMACPP_CONVERT or ~/.cache/llmrec/llama.cpp-convert."""
    folder = Path(os.environ.get(CONVERTER_ENV) or DEFAULT_CONVERTER_DIR).expanduser()
    script = folder / "convert_lora_to_gguf.py"
    if not script.is_file():
        raise ConfigError(f"llama.cpp's convert_lora_to_gguf.py is not in {folder}: run scripts/bootstrap.sh "
                          f"(it unpacks it from the llama-cpp-python sources), or set {CONVERTER_ENV}")
    return script


def _checkpoint(model: PeftModel, optimizer: torch.optim.Optimizer, folder: Path, position: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "state.pt.partial"
    torch.save({"position": position, "adapter": get_peft_model_state_dict(model),
                "optimizer": optimizer.state_dict()}, partial)
    partial.replace(folder / "state.pt")


def _resume(model: PeftModel, optimizer: torch.optim.Optimizer, folder: Path) -> int:
    """Load the last checkpoint, if any; returns how many sequences it had trained on."""
    path = folder / "state.pt"
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["position"])

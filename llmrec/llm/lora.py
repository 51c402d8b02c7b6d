"""LoRA fine-tuning of a GGUF chat model with transformers + peft, exported back to GGUF for llama.cpp.

transformers reads the GGUF weights (dequantised to fp32), peft adds the adapter, a plain loop trains it on
(chat prompt, answer) pairs with the loss on the answer tokens only, and llama.cpp's own converter
(`convert_lora_to_gguf.py`, from the llama-cpp-python source distribution; `scripts/bootstrap.sh` unpacks it)
writes the adapter in the format `Llama(lora_path=...)` loads.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Sequence

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
               config: ProfileTuneConfig, checkpoint_dir: Path, seed: int,
               progress: bool = True) -> tuple[PeftModel, int]:
    """Train a LoRA adapter on `examples` (one sequence a step, `config.grad_accumulation` steps an update,
    `config.epochs` passes in a seeded order); returns the adapted model and its number of updates. A checkpoint
    after every update lets a killed run resume."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.lr)
    order = [i for epoch in range(config.epochs)
             for i in random.Random(seed + epoch).sample(range(len(examples)), len(examples))]
    done = _resume(peft_model, optimizer, checkpoint_dir)
    device = next(peft_model.parameters()).device
    peft_model.train()
    with tqdm(total=len(order), initial=done, unit="seq", desc="LoRA training", disable=not progress) as bar:
        for position in range(done, len(order)):
            ids, labels = encode_example(tokenizer, examples[order[position]], config.max_length)
            loss = peft_model(input_ids=torch.tensor([ids], device=device),
                              labels=torch.tensor([labels], device=device)).loss
            (loss / config.grad_accumulation).backward()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (position + 1) % config.grad_accumulation == 0 or position + 1 == len(order):
                optimizer.step()
                optimizer.zero_grad()
                _checkpoint(peft_model, optimizer, checkpoint_dir, position + 1)
    peft_model.eval()
    return peft_model, math.ceil(len(order) / config.grad_accumulation)


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

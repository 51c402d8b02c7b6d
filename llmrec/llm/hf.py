"""Backend for causal LMs run in-process with Hugging Face `transformers` (batched, on CPU or a GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from llmrec.config import LLMConfig
from llmrec.device import resolve_device
from llmrec.errors import ConfigError
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.base import Generation, GenerationParams, Message
from llmrec.llm.ids import model_id_for


class TransformersBackend:
    """Runs a `transformers` causal LM on `config.batch_size` prompts at a time.

    Batches are left-padded so every row's new tokens start at the same position; the tokenizer's chat template
    renders the prompts (a plain `role: content` rendering when it has none). Greedy when temperature is 0.
    """

    takes_adapters = True
    supports_grammar = False

    def __init__(self, config: LLMConfig, adapter: LoRAAdapter | None = None) -> None:
        if config.batch_size < 1:
            raise ConfigError(f"llm.batch_size must be >= 1, not {config.batch_size}")
        self.model_id = adapter.model_id(model_id_for(config)) if adapter else model_id_for(config)
        self.device = resolve_device(config.device, "llm.device")
        self._batch_size = config.batch_size
        self._tokenizer, self._model = _load(config.model, self.device)
        if adapter is not None:
            from peft import PeftModel

            self._model = PeftModel.from_pretrained(self._model, str(adapter.path)).merge_and_unload().eval()
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            if self._tokenizer.eos_token is None:
                raise ConfigError(f"llm.model {config.model!r}: the tokenizer has neither a pad nor an EOS token")
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._eos_ids = _eos_ids(self._tokenizer, self._model)
        self._end_ids = torch.tensor(sorted({*self._eos_ids, self._tokenizer.pad_token_id}), device=self.device)

    def generate(self, prompts: Sequence[list[Message]], params: GenerationParams) -> list[Generation]:
        """One completion per prompt, in order; seeded with `params.seed` so a call is reproducible."""
        torch.manual_seed(params.seed)
        texts = [self._render(messages) for messages in prompts]
        results: list[Generation] = []
        for start in range(0, len(texts), self._batch_size):
            results.extend(self._generate_batch(texts[start:start + self._batch_size], params))
        return results

    def close(self) -> None:
        """Move the weights off the GPU and drop them."""
        self._model.to("cpu")
        del self._model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _render(self, messages: list[Message]) -> str:
        if self._tokenizer.chat_template:
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return plain_chat(messages)

    def _generate_batch(self, texts: list[str], params: GenerationParams) -> list[Generation]:
        # A chat template writes its own special tokens (BOS); the plain rendering relies on the tokenizer's.
        inputs = self._tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self._tokenizer.chat_template).to(self.device)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.temperature > 0 else {"do_sample": False}
        )
        with torch.inference_mode():
            output = self._model.generate(
                **inputs, max_new_tokens=params.max_tokens, pad_token_id=self._tokenizer.pad_token_id,
                eos_token_id=self._eos_ids, **sampling,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        ended = torch.isin(new_tokens, self._end_ids)
        # Tokens before the first EOS/pad; rows that never ended count every generated token.
        counts = torch.where(ended.any(dim=1), ended.int().argmax(dim=1), new_tokens.shape[1]).tolist()
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        decoded = self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [Generation(text=_cut_at_stop(text, params.stop), prompt_tokens=int(n_prompt), output_tokens=int(n))
                for text, n_prompt, n in zip(decoded, prompt_counts, counts)]


def plain_chat(messages: list[Message]) -> str:
    """The rendering for tokenizers without a chat template: `role: content` lines, then `assistant:`."""
    return "".join(f"{message['role']}: {message['content']}\n" for message in messages) + "assistant:"


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    return text[:min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))]


def _load(model: str, device: torch.device) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and eval-mode model from a local folder or a hub name; ConfigError when neither loads."""
    path = Path(model).expanduser()
    if path.is_dir():
        source = str(path)
    elif model.startswith(("/", ".", "~")):
        raise ConfigError(f"llm.model {model!r} is not a folder (expected a transformers model folder or hub name)")
    else:
        source = model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        causal_lm = AutoModelForCausalLM.from_pretrained(source)
    except (OSError, ValueError) as exc:  # missing files, unreachable hub, unknown architecture
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"cannot load llm.model {model!r} with transformers ({type(exc).__name__}: {reason}). Without internet "
            f"access only local folders and models in the Hugging Face cache load (HF_HUB_OFFLINE=1 skips the hub)"
        ) from None
    return tokenizer, causal_lm.to(device).eval()


def _eos_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    """The ids that end a completion: the tokenizer's EOS and any the model's generation config names."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})

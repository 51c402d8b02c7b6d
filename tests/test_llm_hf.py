"""TransformersBackend on a tiny random Llama and a word-level tokenizer built offline in a temporary folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from llmrec.config import LLMConfig
from llmrec.errors import ConfigError
from llmrec.llm import make_backend
from llmrec.llm.base import GenerationParams, Message
from llmrec.llm.hf import TransformersBackend, plain_chat

SENTENCES = [
    "system : you write short movie profiles .",
    "user : the user liked star wars , alien and blade runner .",
    "assistant : the user enjoys science fiction and space adventures .",
    "user : the user watched toy story , fargo and heat and many more films .",
    "assistant : a fan of animation , crime and thrillers with a taste for drama .",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)
GREEDY = GenerationParams(max_tokens=8, temperature=0.0)


def _chat(user: str) -> list[Message]:
    return [{"role": "system", "content": "you write short movie profiles ."}, {"role": "user", "content": user}]


PROMPTS = [
    _chat("the user liked star wars ."),
    _chat("the user liked star wars , alien and blade runner and watched toy story , fargo and heat ."),
    _chat("the user liked heat , fargo and many more crime films with a taste for drama and thrillers "
          "and science fiction and space adventures ."),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A tiny model gains nothing from threads, and torch's thread pool crawls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (random weights, seeded) and a word-level tokenizer with a chat template, saved to disk."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<eos>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=raw.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> TransformersBackend:
    return TransformersBackend(LLMConfig(backend="transformers", model=str(model_dir), device="cpu", batch_size=2))


def test_batch_returns_one_generation_per_prompt_in_order(backend: TransformersBackend, model_dir: Path) -> None:
    results = backend.generate(PROMPTS, GREEDY)
    assert backend.model_id == str(model_dir)
    assert len(results) == 3
    assert all(0 <= r.output_tokens <= GREEDY.max_tokens for r in results)
    assert 0 < results[0].prompt_tokens < results[1].prompt_tokens < results[2].prompt_tokens
    # In order, and left padding leaves each row's completion as if it had been generated alone.
    assert results == [backend.generate([prompt], GREEDY)[0] for prompt in PROMPTS]


def test_greedy_generation_is_deterministic(backend: TransformersBackend) -> None:
    first = backend.generate(PROMPTS, GREEDY)
    assert any(r.text for r in first)
    assert backend.generate(PROMPTS, GREEDY) == first


def test_sampling_is_reproducible_with_the_same_seed(backend: TransformersBackend) -> None:
    sampled = GenerationParams(max_tokens=8, temperature=1.0, top_p=0.95, seed=7)
    assert backend.generate(PROMPTS, sampled) == backend.generate(PROMPTS, sampled)


def test_stop_strings_cut_the_text(backend: TransformersBackend) -> None:
    text = backend.generate(PROMPTS[:1], GREEDY)[0].text
    words = text.split()
    assert len(words) >= 2, f"greedy output too short to test stop strings: {text!r}"
    stop = f" {words[1]}"
    cut = backend.generate(PROMPTS[:1], GenerationParams(max_tokens=8, temperature=0.0, stop=("<never>", stop)))
    assert cut[0].text == text[:text.find(stop)]


def test_make_backend_builds_the_transformers_backend(model_dir: Path) -> None:
    config = LLMConfig(backend="transformers", model=str(model_dir), device="auto")
    assert isinstance(make_backend(config), TransformersBackend)


def test_plain_rendering_without_chat_template() -> None:
    assert plain_chat(_chat("hi")) == "system: you write short movie profiles .\nuser: hi\nassistant:"


def test_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        TransformersBackend(LLMConfig(backend="transformers", model=str(missing), device="cpu"))


def test_folder_without_model_files_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        TransformersBackend(LLMConfig(backend="transformers", model=str(tmp_path), device="cpu"))


def test_unknown_device_is_a_config_error(model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="llm.device"):
        TransformersBackend(LLMConfig(backend="transformers", model=str(model_dir), device="tpu"))

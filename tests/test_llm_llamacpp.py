"""The default LLM backend for real: the embedded SmolLM2-135M-Instruct GGUF run by llama-cpp-python."""

from __future__ import annotations

import pytest

from llmrec.config import LLMConfig, ProfileConfig
from llmrec.errors import ConfigError
from llmrec.llm import GenerationParams, make_backend
from llmrec.llm.embedded import resolve_gguf
from llmrec.data.split import make_split
from llmrec.profiles import CatalogFacts, ProfileWriter, long_term_request
from llmrec.profiles.grammar import GRAMMAR_KEY
from test_profiles import HISTORIES, movie_dataset

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/bootstrap.sh installs it)")


@pytest.fixture(scope="module")
def backend():
    try:
        resolve_gguf(LLMConfig().model)
    except ConfigError as exc:
        pytest.skip(f"embedded GGUF missing: {exc}")
    return make_backend(LLMConfig(threads=2))


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You answer in one short sentence."}, {"role": "user", "content": text}]


def test_generates_in_order_with_token_counts(backend):
    params = GenerationParams(max_tokens=12, temperature=0.0)
    prompts = [chat("Name a fruit."), chat("Name a colour. Then name a much longer list of other colours.")]
    first, second = backend.generate(prompts, params)
    assert first.text.strip() and second.text.strip()
    assert 0 < first.output_tokens <= 12 and 0 < second.output_tokens <= 12
    assert first.prompt_tokens < second.prompt_tokens
    assert backend.generate(prompts[:1], params)[0].text == first.text  # greedy is deterministic
    assert backend.model_id == "llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_bad_model_paths_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="GGUF file not found"):
        make_backend(LLMConfig(model=str(tmp_path / "missing.gguf")))
    with pytest.raises(ConfigError, match="unknown embedded LLM"):
        make_backend(LLMConfig(model="embedded:gpt-9"))


def test_writer_with_the_real_model(backend):
    """Every user gets a clean profile; the `tricky` user's history holds a title that tries to instruct the
    model, which reaches it only as quoted data."""
    dataset = movie_dataset(HISTORIES)
    split = make_split(dataset)
    facts = CatalogFacts.from_catalog(dataset.catalog, split)
    config = ProfileConfig(recent_items=1, min_long_term=3, max_chars=300)  # short: one long-term item
    writer = ProfileWriter(facts, dataset.name, config, backend, GenerationParams(max_tokens=40))
    profiles = writer.write([long_term_request(split, u, 1) for u in range(split.num_users)])
    assert [p.user_id for p in profiles] == list(split.user_ids)
    for profile in profiles:
        assert profile.text and len(profile.text) <= 300 and "\x07" not in profile.text
        assert profile.provenance.model_id == backend.model_id and profile.provenance.prompt_version == "profile/llm.v1"
        assert (profile.source == "llm") == (profile.fallback_reason is None)
    stats = writer.stats
    assert stats.profiles == 3 and stats.fallbacks["short-history"] == 1
    assert stats.llm + sum(stats.fallbacks.values()) == 3
    assert stats.prompt_tokens > 0 and 0 < stats.output_tokens <= 40 * 2 * config.attempts


def test_writer_under_the_profile_grammar_names_only_items_it_was_shown(backend):
    """With `profile.grammar`, every LLM profile has the grammar's shape and cites titles of the user's own
    representative items only (the injected title among them reaches it neutralised)."""
    dataset = movie_dataset(HISTORIES)
    split = make_split(dataset)
    facts = CatalogFacts.from_catalog(dataset.catalog, split)
    config = ProfileConfig(recent_items=1, min_long_term=3, grammar=True)
    writer = ProfileWriter(facts, dataset.name, config, backend, GenerationParams(max_tokens=60))
    requests = [long_term_request(split, u, 1) for u in range(split.num_users)]
    profiles = writer.write(requests)
    assert writer.grammar and writer.prompt_version == "profile/llm.v1+" + GRAMMAR_KEY
    llm = [(p, r) for p, r in zip(profiles, requests) if p.source == "llm"]
    assert llm, [p.fallback_reason for p in profiles]
    for profile, request in llm:
        assert profile.text.startswith("This user likes ") and ", such as \"" in profile.text
        assert profile.provenance.prompt_version == "profile/llm.v1+" + GRAMMAR_KEY
        assert writer.matcher.find(profile.text) <= set(request.long_term.tolist())
        assert "HACKED" not in profile.text and "\x07" not in profile.text

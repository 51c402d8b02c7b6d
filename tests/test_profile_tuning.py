"""Tuning a profile writer on real data with the real models: users, reward, sample selection, and the whole
`llmrec profile tune` path (llama.cpp sampling -> transformers + peft LoRA -> GGUF -> llama.cpp with the adapter)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.experiment import Experiment
from llmrec.llm.adapter import LoRAAdapter
from llmrec.profiles import long_term_request
from llmrec.profiles.tuning import ProfileTuner, reward_targets, user_groups


@pytest.fixture(scope="module")
def ml100k_experiment(ml100k_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    config = load_config(None, [f"run_dir={root / 'run'}", f"data.path={ml100k_folder}", "profile.recent_items=20",
                                f"encoder.cache_dir={root / 'cache'}", "profile_tune.users=3",
                                "profile_tune.check_users=50", "profile_tune.samples=2", "profile_tune.epochs=1",
                                "profile_tune.grad_accumulation=2", "llm.threads=2", "profile_tune.threads=2"])
    return Experiment(config)


def tuner_of(experiment: Experiment, out_dir) -> ProfileTuner:
    return ProfileTuner(experiment.config, experiment.split, experiment.profiles, experiment.encoder,
                        experiment.item_vectors, out_dir)


def test_check_and_tuning_users_are_disjoint_seeded_and_old_enough(ml100k_experiment):
    config, split = ml100k_experiment.config, ml100k_experiment.split
    groups = user_groups(config, split)
    assert (len(groups.check), len(groups.tuning)) == (50, 3)
    assert not set(groups.check) & set(groups.tuning)
    assert np.array_equal(user_groups(config, split).tuning, groups.tuning)
    for user in groups.tuning:
        request = long_term_request(split, int(user), config.profile.recent_items)
        assert len(request.long_term) >= config.profile.min_long_term
        targets = reward_targets(split, int(user), request, config.profile_tune.target_items)
        assert len(targets) == 5 and list(targets) == list(split.train[user][request.cutoff:request.cutoff + 5])


def test_the_reward_ranks_a_targets_own_title_first(ml100k_experiment):
    tuner = tuner_of(ml100k_experiment, ml100k_experiment.run_dir / "reward")
    split = ml100k_experiment.split
    toy_story = split.item_index("1")
    rewards = tuner.reward(["Toy Story (1995)", "a documentary about deep-sea fishing boats"],
                           [np.array([toy_story])] * 2, [np.array([], dtype=np.int64)] * 2)
    assert rewards[0] > 0.99 and rewards[1] < rewards[0] and 0 <= rewards[1] <= 1


def test_training_targets_are_each_users_best_accepted_complete_sample(ml100k_experiment, tmp_path):
    tuner = tuner_of(ml100k_experiment, tmp_path)
    split, settings = ml100k_experiment.split, ml100k_experiment.config.profile
    user = int(tuner.groups.tuning[0])
    request = long_term_request(split, user, settings.recent_items)
    samples = [{"text": "Loves tense thrillers and old westerns a lot.", "reason": None, "reward": 0.7},
               {"text": "Loves tense thrillers and old westerns, and", "reason": None, "reward": 0.9},  # cut off
               {"text": "This person buys everyday makeup, especially for the eyes and nails.",
                "reason": "few-shot-copy", "reward": 0.95},
               {"text": "Enjoys crime films and dark comedies from the nineties.", "reason": None, "reward": 0.8}]
    lines = [{"user_id": request.user_id, "cutoff": request.cutoff, "history_hash": request.history_hash,
              "samples": samples, "template": "Enjoys Drama.", "template_reward": 0.6},
             {"user_id": request.user_id, "cutoff": request.cutoff, "history_hash": "stale", "samples": samples,
              "template": "Enjoys Drama.", "template_reward": 0.6}]
    tuner.samples_path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{truncated")
    examples, rewards = tuner.training_examples()
    assert len(examples) == 1
    messages, answer = examples[0]
    assert answer == "Enjoys crime films and dark comedies from the nineties."
    assert [m["role"] for m in messages] == ["system", "user"]  # the tuned prompt: no few-shot turns
    assert rewards == {"accepted_mean": pytest.approx(0.75), "chosen_mean": 0.8, "template_mean": 0.6}


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no manifest.json"):
        LoRAAdapter.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a valid manifest"):
        LoRAAdapter.load(tmp_path)


def test_tune_samples_trains_exports_and_the_tuned_writer_writes(ml100k_experiment):
    experiment = ml100k_experiment
    tuner = tuner_of(experiment, experiment.run_dir / "profile-tune")
    rate = tuner.sample(progress=False)
    assert rate["users"] == 3 and rate["output_tok_per_s"] > 0
    assert tuner.sample(progress=False)["users"] == 0  # resumes: nothing left to sample
    lines = list(tuner.read_samples())
    assert len(lines) == 3 and all(len(line["samples"]) == 2 for line in lines)
    assert all(0 <= s["reward"] <= 1 for line in lines for s in line["samples"])
    experiment.profiles.release_llm()
    adapter_dir = tuner.train(progress=False)
    adapter = LoRAAdapter.load(adapter_dir)
    manifest = adapter.manifest
    assert manifest.prompt == "profile/tuned.v1" and manifest.teacher_prompt == "profile/llm.v1"
    assert manifest.check_users == 50 and manifest.tuning_users == 3 and manifest.examples >= 1
    assert manifest.steps == -(-manifest.examples // 2) and len(manifest.base_sha256) == 64  # 1 epoch, 2 a step
    assert adapter.gguf.stat().st_size < 8_000_000
    tuned = experiment.profiles.with_writer("llm", str(adapter_dir))
    assert tuned.prompt_version == "profile/tuned.v1"
    assert tuned.model_id.startswith("llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf+lora:adapter@")
    user = str(experiment.split.user_ids[tuner.groups.check[0]])
    profile = tuned.profile(user)
    tuned.release_llm()
    assert profile.provenance.model_id == tuned.model_id and profile.text
    assert "Items (oldest first)" not in profile.text

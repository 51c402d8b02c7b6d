"""Tuning a profile writer on real data with the real models: users, reward, sample selection, and the whole
`llmrec profile tune` path (llama.cpp sampling -> transformers + peft LoRA -> GGUF -> llama.cpp with the adapter)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel

from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.experiment import Experiment
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.embedded import resolve_gguf
from llmrec.llm.lora import answer_logprob, load_gguf_model
from llmrec.profiles import long_term_request
from llmrec.profiles.reward import retrieval_reward
from llmrec.profiles.tuning import ProfileTuner, reward_targets, user_groups
from llmrec.shard import Shard


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
    assert set(groups.check) <= set(groups.held_out) and not set(groups.held_out) & set(groups.tuning)
    assert len(groups.held_out) > len(groups.check)
    for user in groups.held_out:  # old enough, with a later training item
        request = long_term_request(split, int(user), config.profile.recent_items)
        assert config.profile.min_long_term <= len(request.long_term) < len(split.train[user])
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


def test_retrieval_reward_by_hand():
    # row 0 is padding; item scores under the vector are 4, 3, 2, 1 for items 1..4
    items = np.array([[0.0], [4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    vector = np.array([1.0], dtype=np.float32)
    assert retrieval_reward(items, vector, np.array([1]), np.array([], dtype=np.int64)) == 1.0
    # target 3 (score 2): the pool is items 1, 2, 4; two of three score above it
    assert retrieval_reward(items, vector, np.array([3]), np.array([], dtype=np.int64)) == pytest.approx(1 - 2 / 3)
    # a seen item leaves the pool: items 2 and 4 remain, one above
    assert retrieval_reward(items, vector, np.array([3]), np.array([1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one target"):
        retrieval_reward(items, vector, np.array([], dtype=np.int64), np.array([1]))


@pytest.mark.parametrize("measure, expected", [
    ("auc", 1 - (0 + 2) / 2 / 3),
    ("ndcg", (1 / np.log2(2) + 1 / np.log2(4)) / 2),
    ("mrr", (1 + 1 / 3) / 2),
    ("log-rank", 1 - (np.log(1) + np.log(3)) / 2 / np.log(4)),
])
def test_top_weighted_rewards_by_hand(measure, expected):
    # targets 1 (first) and 4 (items 2 and 3 above it); seen item 5 and the targets leave the pool: 2, 3, 6
    items = np.array([[0.0], [4.0], [3.0], [2.0], [1.0], [0.5], [0.25]], dtype=np.float32)
    value = retrieval_reward(items, np.array([1.0], dtype=np.float32), np.array([1, 4]), np.array([5]), measure)
    assert value == pytest.approx(expected)


def write_samples(tuner: ProfileTuner, samples_of: dict[int, list[dict]], scored_by: str | None = None) -> None:
    """A samples file with `samples_of[user]` for each user, a stale line (history changed) and a cut-off one;
    scored by the tuner's reward unless `scored_by` names another."""
    split, settings = tuner.split, tuner.config.profile
    lines = []
    for user, samples in samples_of.items():
        request = long_term_request(split, user, settings.recent_items)
        line = {"user_id": request.user_id, "cutoff": request.cutoff, "history_hash": request.history_hash,
                "scored_by": scored_by or tuner.reward_name, "samples": samples, "template": "Enjoys Drama.",
                "template_reward": 0.6}
        lines += [line, {**line, "history_hash": "stale"}]
    tuner.samples_path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{truncated")


def sample(text: str, reward: float, reason: str | None = None) -> dict:
    return {"text": text, "reason": reason, "reward": reward}


MIXED_SAMPLES = [sample("Loves tense thrillers and old westerns a lot.", 0.7),
                 sample("Loves tense thrillers and old westerns, and", 0.9),  # cut off: never accepted
                 sample("This person buys everyday makeup, especially for the eyes and nails.", 0.95, "few-shot-copy"),
                 sample("Enjoys crime films and dark comedies from the nineties.", 0.8)]


def test_training_targets_are_each_users_best_accepted_complete_sample(ml100k_experiment, tmp_path):
    tuner = tuner_of(ml100k_experiment, tmp_path)
    write_samples(tuner, {int(tuner.groups.tuning[0]): MIXED_SAMPLES})
    examples, rewards = tuner.training_examples()
    assert len(examples) == 1
    messages, answer = examples[0]
    assert answer == "Enjoys crime films and dark comedies from the nineties."
    assert [m["role"] for m in messages] == ["system", "user"]  # the tuned prompt: no few-shot turns
    assert rewards == {"accepted_mean": pytest.approx(0.75), "chosen_mean": 0.8, "template_mean": 0.6}


def test_samples_scored_by_another_reward_are_scored_again(ml100k_experiment, tmp_path):
    experiment = ml100k_experiment
    config = replace(experiment.config, profile_tune=replace(experiment.config.profile_tune, reward="mrr"))
    tuner = ProfileTuner(config, experiment.split, experiment.profiles, experiment.encoder, experiment.item_vectors,
                         tmp_path)
    user = int(tuner.groups.tuning[0])
    request = long_term_request(experiment.split, user, config.profile.recent_items)
    targets = reward_targets(experiment.split, user, request, config.profile_tune.target_items)
    on_target = f"Enjoys {experiment.profiles.writer.facts.titles[targets[0]]} and films like it."
    off_target = "Enjoys documentaries about deep-sea fishing boats."
    write_samples(tuner, {user: [sample(off_target, 0.9), sample(on_target, 0.1)]}, scored_by="retrieval-auc@5")
    examples, rewards = tuner.training_examples()
    assert [answer for _, answer in examples] == [on_target]  # the stored AUC values are not used
    expected = tuner.reward([on_target, off_target, "Enjoys Drama."], [targets] * 3, [request.long_term] * 3)
    assert tuner.reward_name == "retrieval-mrr@5" and expected[0] > expected[1]
    assert rewards == pytest.approx({"accepted_mean": expected[:2].mean(), "chosen_mean": expected[0],
                                     "template_mean": expected[2]})


def test_preference_pairs_are_best_vs_worst_accepted_where_the_gap_is_wide_enough(ml100k_experiment, tmp_path):
    tuner = tuner_of(ml100k_experiment, tmp_path)
    first, second, third = (int(u) for u in tuner.groups.tuning[:3])
    narrow = [sample("Likes quiet French dramas about family life.", 0.62),
              sample("Likes quiet French dramas and a few comedies.", 0.60)]
    alone = [sample("Likes musicals from the fifties.", 0.9), sample("Likes musicals, and", 0.1)]
    write_samples(tuner, {first: MIXED_SAMPLES, second: narrow, third: alone})
    pairs, rewards = tuner.preference_pairs()  # dpo_min_gap 0.05: `narrow` is noise, `alone` has one accepted
    assert len(pairs) == 1
    messages, preferred, rejected = pairs[0]
    assert (preferred, rejected) == ("Enjoys crime films and dark comedies from the nineties.",
                                     "Loves tense thrillers and old westerns a lot.")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert rewards == {"accepted_mean": pytest.approx(0.75), "chosen_mean": 0.8, "rejected_mean": 0.7,
                       "template_mean": 0.6}


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no manifest.json"):
        LoRAAdapter.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a valid manifest"):
        LoRAAdapter.load(tmp_path)


@pytest.fixture(scope="module")
def sampled_tuner(ml100k_experiment) -> tuple[ProfileTuner, list[dict[str, float]]]:
    """The tuner after its sampling stage ran (llama.cpp) on the three tuning users in two shards, as two
    processes would, and each shard's sampling rate."""
    tuner = tuner_of(ml100k_experiment, ml100k_experiment.run_dir / "profile-tune")
    rates = [tuner.sample(progress=False, shard=Shard(index, 2)) for index in (0, 1)]
    ml100k_experiment.profiles.release_llm()
    return tuner, rates


@pytest.fixture(scope="module")
def sft_adapter(sampled_tuner) -> LoRAAdapter:
    """The adapter `llmrec profile tune` trains (expert iteration) on those samples."""
    tuner, _ = sampled_tuner
    return LoRAAdapter.load(tuner.train(progress=False))


def test_tune_samples_trains_exports_and_the_tuned_writer_writes(ml100k_experiment, sampled_tuner, sft_adapter):
    experiment, (tuner, rates), adapter = ml100k_experiment, sampled_tuner, sft_adapter
    assert [rate["users"] for rate in rates] == [2, 1] and all(rate["output_tok_per_s"] > 0 for rate in rates)
    assert tuner.sample(progress=False)["users"] == 0  # resumes: the two shards sampled every tuning user
    lines = list(tuner.read_samples())
    assert sorted(line["user_id"] for line in lines) == sorted(str(experiment.split.user_ids[u])
                                                               for u in tuner.groups.tuning)
    assert all(len(line["samples"]) == 2 for line in lines)
    assert all(0 <= s["reward"] <= 1 for line in lines for s in line["samples"])
    adapter_dir = adapter.path
    manifest = adapter.manifest
    assert manifest.prompt == "profile/tuned.v1" and manifest.teacher_prompt == "profile/llm.v1"
    assert manifest.check_users == 50 and manifest.tuning_users == 3 and manifest.examples >= 1
    assert manifest.steps == -(-manifest.examples // 2) and len(manifest.base_sha256) == 64  # 1 epoch, 2 a step
    assert manifest.method == "sft" and manifest.init_adapter == "" and manifest.reward == "retrieval-auc@5"
    assert adapter.gguf.stat().st_size < 8_000_000
    tuned = experiment.profiles.with_writer("llm", str(adapter_dir))
    assert tuned.prompt_version == "profile/tuned.v1"
    assert tuned.model_id.startswith("llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf+lora:adapter@")
    user = str(experiment.split.user_ids[tuner.groups.check[0]])
    profile = tuned.profile(user)
    tuned.release_llm()
    assert profile.provenance.model_id == tuned.model_id and profile.text
    assert "Items (oldest first)" not in profile.text


def test_dpo_from_the_sft_adapter_moves_the_writer_towards_the_preferred_answers(ml100k_experiment, sft_adapter,
                                                                                  tmp_path):
    config = ml100k_experiment.config
    tune = replace(config.profile_tune, method="dpo", init_adapter=str(sft_adapter.path), lr=1e-3, epochs=2,
                   grad_accumulation=1)
    tuner = ProfileTuner(replace(config, profile_tune=tune), ml100k_experiment.split, ml100k_experiment.profiles,
                         ml100k_experiment.encoder, ml100k_experiment.item_vectors, tmp_path)
    preferred = ["Enjoys gritty crime films and tense thrillers.", "Enjoys dark crime stories and film noir.",
                 "Enjoys tense thrillers about crime and detectives."]
    rejected = ["Likes many kinds of movies.", "Likes movies of all sorts.",
                "Likes many different movies from any year."]
    write_samples(tuner, {int(user): [sample(good, 0.8), sample(bad, 0.5)]
                          for user, good, bad in zip(tuner.groups.tuning, preferred, rejected)})
    adapter = LoRAAdapter.load(tuner.train(progress=False))
    manifest = adapter.manifest
    base_model = manifest.base_model
    assert manifest.method == "dpo" and manifest.init_adapter == sft_adapter.model_id(base_model)
    assert (manifest.examples, manifest.steps) == (3, 6) and manifest.lora["dpo_beta"] == 0.1
    assert manifest.rewards == pytest.approx({"accepted_mean": 0.65, "chosen_mean": 0.8, "rejected_mean": 0.5,
                                              "template_mean": 0.6})
    # against the reference (the SFT adapter, log-likelihoods kept beside the checkpoints), the DPO writer
    # raised each preferred answer's likelihood relative to the rejected one's
    reference = json.loads((tmp_path / "checkpoint-dpo-retrieval-auc@5" / "reference.json").read_text())["values"]
    pairs, _ = tuner.preference_pairs()
    tokenizer, model = load_gguf_model(resolve_gguf(config.llm.model), "cpu")
    policy = PeftModel.from_pretrained(model, str(adapter.path)).eval()
    with torch.no_grad():
        for (messages, good, bad), (reference_good, reference_bad) in zip(pairs, reference):
            good_gain = answer_logprob(policy, tokenizer, (messages, good), tune.max_length) - reference_good
            bad_gain = answer_logprob(policy, tokenizer, (messages, bad), tune.max_length) - reference_bad
            assert good_gain > bad_gain


def test_training_from_an_adapter_without_peft_weights_is_a_clear_error(ml100k_experiment, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"base_model": "b", "base_sha256": "0", "dataset": "d", "prompt": "profile/tuned.v1", "reward": "r",
         "teacher_prompt": "t", "tuning_users": 1, "check_users": 1, "samples_per_user": 1, "examples": 1,
         "steps": 1}))
    config = ml100k_experiment.config
    tune = replace(config.profile_tune, init_adapter=str(tmp_path))
    tuner = ProfileTuner(replace(config, profile_tune=tune), ml100k_experiment.split, ml100k_experiment.profiles,
                         ml100k_experiment.encoder, ml100k_experiment.item_vectors, tmp_path / "tune")
    write_samples(tuner, {int(tuner.groups.tuning[0]): MIXED_SAMPLES})
    with pytest.raises(ConfigError, match="no adapter_model.safetensors"):
        tuner.train(progress=False)


def bench_script(name: str):
    """bench/<name>.py as a module."""
    path = Path(__file__).parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reward_selection_judges_each_rewards_pick_on_later_items(ml100k_experiment, tmp_path):
    selection = bench_script("reward_selection")
    assert selection.later_quality(np.array([0.0, 9.0, 10.0, 99.0]), 100) == pytest.approx(
        {"HR@10": 0.5, "NDCG@10": (1 + 1 / np.log2(11)) / 4, "AUC": 1 - 118 / 4 / 100})
    tuner = tuner_of(ml100k_experiment, tmp_path)
    split, config = ml100k_experiment.split, ml100k_experiment.config
    users = [int(u) for u in tuner.groups.tuning[:2]]
    samples = {}
    for user in users:
        request = long_term_request(split, user, config.profile.recent_items)
        later = split.train[user][request.cutoff + config.profile_tune.target_items]
        samples[user] = [sample(f"Enjoys {ml100k_experiment.profiles.writer.facts.titles[later]} a lot.", 0.0),
                         sample("Enjoys documentaries about deep-sea fishing boats.", 0.0)]
    write_samples(tuner, samples)
    metrics = selection.selection_metrics(tuner, ml100k_experiment, [1, 5])
    assert metrics["users"] == 2 and metrics["samples_per_user"] == 2 and metrics["targets"] == [1, 5]
    rules = [f"{measure}@{count}" for count in (1, 5) for measure in ("auc", "ndcg", "mrr", "log-rank")]
    rules += ["random", "template", "oracle"]
    for rule in rules:
        assert set(metrics[rule]) == {"HR@10", "NDCG@10", "AUC"} and 0 <= metrics[rule]["AUC"] <= 1
    # the oracle picks, per user, the sample naming a later item: at least as good as any rule by NDCG@10
    assert all(metrics["oracle"]["NDCG@10"] >= metrics[rule]["NDCG@10"] for rule in rules)
    assert metrics["oracle"]["NDCG@10"] > metrics["random"]["NDCG@10"]


def test_writers_are_compared_on_the_same_users_with_paired_intervals():
    tuned = {"HR@10": np.array([1.0, 0, 1, 0, 0, 0]), "AUC": np.array([0.9, 0.5, 0.8, 0.4, 0.6, 0.7])}
    template = {"HR@10": np.array([1.0, 0, 0, 0, 0, 0]), "AUC": tuned["AUC"] - 0.1}
    differences = bench_script("profiles").paired_differences({"tuned": tuned, "template": template}, "tuned", 0)
    assert set(differences) == {"template"}
    gap = differences["template"]
    assert gap["HR@10"] == pytest.approx(1 / 6) and gap["AUC"] == pytest.approx(0.1)
    assert gap["AUC-ci95"] == pytest.approx((0.1, 0.1))  # higher for every user: every resample says so
    low, high = gap["HR@10-ci95"]
    assert low == 0.0 and 1 / 6 < high <= 1.0  # one user of six differs: a resample may miss them

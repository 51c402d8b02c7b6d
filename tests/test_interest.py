"""The interest model: learning, no leakage through the profile, cold items, fusion variants, save/load, LoRA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.config import EvalConfig, InterestConfig, load_config
from llmrec.data.schema import Catalog
from llmrec.data.split import EvalCases, make_split
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.models.base import pad_histories
from llmrec.models.interest import InterestModel, training_examples
from llmrec.models.interest_net import InterestNet, ItemTower, lora_targets
from llmrec.models.popularity import Popularity
from llmrec.models.registry import load_model
from llmrec.models.user_features import UserFeatures
from llmrec.ranking import Exclusion
from synthetic import cyclic_dataset

WINDOW = 4
FAST = InterestConfig(hidden_size=32, epochs=30, eval_every=5, patience=3, num_negatives=16, batch_size=32,
                      threads=1)


@pytest.fixture(scope="module")
def cyclic():
    """The cyclic dataset plus one catalog item nobody interacted with (a cold item)."""
    dataset = cyclic_dataset(num_users=60, num_items=20, length=12)
    items = pd.concat([dataset.catalog.items, pd.DataFrame({"item_id": ["cold"], "text": ["a new item"]})])
    split = make_split(dataclasses.replace(dataset, catalog=Catalog(items)))
    rng = np.random.default_rng(0)
    text = rng.normal(size=(split.num_items + 1, 24)).astype(np.float32)
    text[0] = 0
    profiles = rng.normal(size=(split.num_users, 24)).astype(np.float32)
    inputs = UserFeatures(profiles, np.ones(split.num_users, dtype=bool),
                          rng.integers(1, 3, size=(split.num_users, 1)), [2])
    return split, text, inputs


def test_learns_the_sequence_pattern(cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, FAST, seed=1).fit(split)
    evaluator = FullRankingEvaluator(split, EvalConfig())
    ours = evaluator.evaluate(model)["NDCG@10"]
    popularity = evaluator.evaluate(Popularity().fit(split))["NDCG@10"]
    assert ours > 0.8 > popularity
    assert model.report is not None and model.report.best_epoch > 0


@pytest.mark.parametrize("max_len", [4, 6])
def test_training_windows_never_use_the_profile_for_items_it_mentions(max_len):
    train = [np.arange(1, 15), np.arange(1, 4), np.array([5])]
    examples = training_examples(train, window=4, max_len=max_len, earlier_windows=2)
    covered = {user: [] for user in range(len(train))}
    for user, inputs, targets, profile_mask in zip(*examples.values()):
        items = train[user]
        cutoff = max(0, len(items) - 4)  # the profile covers items[:cutoff]
        real = targets != 0
        positions = [int(np.flatnonzero(items == t)[0]) for t in targets[real].tolist()]
        # the profile is on exactly where the target comes after the cut-off
        assert profile_mask[real].tolist() == [p >= cutoff for p in positions]
        assert not profile_mask[~real].any()
        # each input is the item just before its target
        assert [items[p - 1] for p in positions] == inputs[real].tolist()
        covered[int(user)] += positions
    assert sorted(covered[0]) == list(range(max(1, 14 - 3 * max_len), 14))  # 3 windows, no overlap
    assert sorted(covered[1]) == [1, 2] and covered[2] == []  # the single-item user has no window


def test_cold_items_are_scored_from_text(cyclic):
    split, text, inputs = cyclic
    config = dataclasses.replace(FAST, epochs=2, new_item_neighbours=0)
    model = InterestModel(text, inputs, WINDOW, config, seed=1).fit(split)
    model.net.eval()
    table = model.net.items.table()
    cold = np.flatnonzero(~model.seen[1:]) + 1
    warm = np.flatnonzero(model.seen[1:]) + 1
    with torch.no_grad():
        expected = model.net.items.text_proj(torch.from_numpy(text))
    assert len(cold) == 1 and torch.allclose(table[cold], expected[cold])  # text only
    assert not torch.allclose(table[warm], expected[warm])  # text + learned ID part
    assert torch.count_nonzero(table[0]) == 0


def test_id_dropout_makes_dropped_items_look_exactly_cold(cyclic):
    split, text, _ = cyclic
    warm = torch.from_numpy(split.train_popularity() > 0)
    tower = ItemTower(torch.from_numpy(text), warm, hidden=16, use_ids=True, id_dropout=0.5)
    torch.manual_seed(0)
    with torch.no_grad():
        text_part, full = tower.text_table(), tower.eval().table()
        dropped = tower.train().table()
    same_as_text = torch.isclose(dropped, text_part).all(1)
    same_as_full = torch.isclose(dropped, full).all(1)
    assert bool((same_as_text | same_as_full).all())  # no rescaling of the kept ID parts
    assert 0 < int((same_as_text & warm).sum()) < int(warm.sum())  # some warm items lost their ID part
    assert bool(same_as_text[~warm].all())  # cold items (and padding) have only their text


def test_a_bounded_id_part_stays_within_its_share_of_the_text_part(cyclic):
    split, text, _ = cyclic
    warm = torch.from_numpy(split.train_popularity() > 0)
    tower = ItemTower(torch.from_numpy(text), warm, hidden=16, use_ids=True, id_dropout=0.0, id_delta_bound=0.25)
    with torch.no_grad():
        tower.id_embedding.weight.mul_(100.0)  # IDs far longer than the text part: the bound must scale them
        text_part, full = tower.text_table(), tower.eval().table()
    delta = (full - text_part).norm(dim=1)
    assert bool((delta <= 0.25 * text_part.norm(dim=1) + 1e-5).all())
    assert torch.allclose(delta[warm], 0.25 * text_part.norm(dim=1)[warm], rtol=1e-4)  # long ones are at the bound
    assert torch.allclose(full[~warm], text_part[~warm])  # cold items: their text alone


def test_items_without_an_id_take_the_id_parts_of_their_text_neighbours(cyclic):
    split, text, _ = cyclic
    warm = torch.from_numpy(split.train_popularity() > 0)
    tower = ItemTower(torch.from_numpy(text), warm, hidden=16, use_ids=True, id_dropout=0.0, neighbours=3,
                      neighbour_temperature=0.1).eval()
    cold = torch.nonzero(~warm[1:]).squeeze(1) + 1
    assert len(cold) == 1
    with torch.no_grad():
        borrowed = tower.table() - tower.text_table()
        for item in cold.tolist():  # brute force: cosine to every warm item, the top 3, softmax at 0.1
            similarity = torch.nn.functional.cosine_similarity(torch.from_numpy(text[item:item + 1]),
                                                               torch.from_numpy(text), dim=1)
            similarity[~warm] = -torch.inf
            top = similarity.topk(3)
            expected = torch.softmax(top.values / 0.1, 0) @ tower.id_embedding.weight[top.indices]
            assert torch.allclose(borrowed[item], expected, atol=1e-6)
        tower.set_neighbours(0, 0.1)
        assert torch.allclose(tower.table()[cold], tower.text_table()[cold])  # 0: the text part alone


def test_a_new_item_with_a_warm_items_text_is_scored_like_it(cyclic):
    split, text, _ = cyclic
    warm = torch.from_numpy(split.train_popularity() > 0)
    tower = ItemTower(torch.from_numpy(text), warm, hidden=16, use_ids=True, id_dropout=0.0, neighbours=5,
                      neighbour_temperature=0.01).eval()
    twin = int(torch.nonzero(warm)[0])
    added = len(text)  # an item added while serving, with the same text as a warm item
    tower.put_texts(torch.tensor([added]), torch.from_numpy(text[twin:twin + 1]))
    with torch.no_grad():
        table = tower.table()
        assert torch.allclose(table[added], table[twin], atol=1e-4)
        assert torch.allclose(tower.rows(torch.tensor([added, twin])), table[[added, twin]], atol=1e-6)


@pytest.mark.parametrize("use_ids,neighbours", [(True, 0), (True, 3), (False, 3)])
def test_inference_embeds_only_the_items_it_needs(cyclic, use_ids, neighbours):
    split, text, _ = cyclic
    tower = ItemTower(torch.from_numpy(text), torch.from_numpy(split.train_popularity() > 0), hidden=16,
                      use_ids=use_ids, id_dropout=0.5, neighbours=neighbours).eval()
    items = torch.tensor([[0, 0, 3, 1, 7], [2, 5, 0, 9, len(text) - 1]])  # left padding, and padding inside
    with torch.no_grad():
        assert torch.allclose(tower.rows(items), tower.table()[items], atol=1e-6)


def test_new_item_boost_adds_to_the_scores_of_items_without_an_id_embedding(cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=1), seed=1).fit(split)
    users, histories = np.array([0, 1]), [split.train[0], split.train[1]]
    new = torch.from_numpy(~model.seen)
    new[0] = False  # padding
    plain = model.score(users, histories)
    with torch.no_grad():  # the network's dot product (with the frozen-content coordinates, on by default)
        queries = model.net.scored_queries(model.interest(users, histories)[0], pad_histories(histories, WINDOW))
        network = queries @ model.net.scored_items(model.net.items.table()).T
        assert torch.allclose(plain, network + model.new_item_offset * new.float(), atol=1e-5)
    model.set_new_item_boost(2.5)
    boosted = model.score(users, histories)
    assert torch.allclose(boosted - plain, 2.5 * new.float(), atol=1e-5)
    assert int(new.sum()) == 1


def test_a_trained_model_takes_the_runs_new_item_neighbours(tmp_path, cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=1), seed=1).fit(split)
    cold = int(np.flatnonzero(~model.seen[1:])[0]) + 1
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m").use_settings(load_config(overrides=["interest.new_item_neighbours=0"]))
    with torch.no_grad():
        items = loaded.net.items
        assert torch.allclose(items.table()[cold], items.text_table()[cold])  # 0: the text part alone
        trained = model.net.items
        assert not torch.allclose(trained.table()[cold], trained.text_table()[cold])  # default 10: borrowed


def test_a_model_saved_before_the_content_score_existed_loads_without_it(cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=1, content_weight=None),
                          seed=1).fit(split)
    params, tensors = model.state()
    del params["config"]["content_weight"]  # as saved by versions without the field
    loaded = InterestModel.from_state(params, tensors, model.features)
    users, histories = np.array([0, 1]), [split.train[0], split.train[1]]
    assert loaded.net.content is None
    assert torch.allclose(loaded.score(users, histories), model.score(users, histories), atol=1e-6)


def test_the_new_item_offset_gives_new_items_the_share_of_probability_they_took(tmp_path, cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=1), seed=1).fit(split)
    fitted = model.calibrate_new_items(split.valid)  # as `fit` did
    assert fitted.likelihood is None  # no validation item was new: no likelihood to fit; 0, capped by the budget
    assert model.new_item_offset == fitted.value == min(0.0, fitted.budget_cap)
    cold = int(np.flatnonzero(~model.seen[1:])[0]) + 1
    cases = split.valid.subset(np.arange(40))
    cases = EvalCases(cases.users, cases.histories,
                      [np.array([cold]) if i % 4 == 0 else t for i, t in enumerate(cases.targets)])  # 10 of 40
    plain, previous = model.score(cases.users, cases.histories), model.new_item_offset
    fit = model.calibrate_new_items(cases, ndcg_budget=1.0)  # the likelihood's offset, uncapped
    offset = fit.value
    scores = model.score(cases.users, cases.histories)
    assert offset == fit.likelihood
    assert torch.allclose(scores[:, cold] - plain[:, cold], torch.tensor(offset - previous, dtype=torch.float32),
                          atol=1e-4)
    exclusion = Exclusion(cases.histories, keep=cases.targets)
    probabilities = torch.softmax(exclusion.apply(scores).double(), dim=1)
    assert float(probabilities[:, cold].sum()) == pytest.approx(10, abs=1e-3)  # the likelihood's optimum
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").new_item_offset == offset


def test_text_loss_adds_a_next_item_loss_over_the_text_part_alone(cyclic):
    from llmrec.train.losses import full_softmax_loss

    split, text, inputs = cyclic
    config = dataclasses.replace(FAST, loss="softmax", id_dropout=0.0, text_loss_weight=0.0, epochs=1)
    base = InterestModel(text, inputs, WINDOW, config, seed=1).fit(split)
    weighted = InterestModel(text, inputs, WINDOW, dataclasses.replace(config, text_loss_weight=0.5), seed=1,
                             seen=base.seen)
    weighted.net.load_state_dict(base.net.state_dict())
    for model in (base, weighted):
        model.net.eval()  # no dropout: both losses see the same network
    batch = next(base._batches(training_examples(split.train, WINDOW, WINDOW, 0), epoch=0))
    profiles, has_profile, context = inputs.rows(batch["users"].numpy())
    with torch.no_grad():
        hidden, _ = base.net(batch["inputs"], profiles, has_profile.unsqueeze(1) & batch["profile_mask"], context)
        keep = batch["targets"] != 0
        queries = base.net.scored_queries(hidden, batch["inputs"])[keep]
        text_only = full_softmax_loss(queries, base.net.scored_items(base.net.items.text_table()),
                                      batch["targets"][keep])
        difference = weighted._loss(weighted.net, batch) - base._loss(base.net, batch)
    assert torch.allclose(difference, 0.5 * text_only, atol=1e-5)


@pytest.mark.parametrize("fusion, short_term", [("gate", "attention"), ("attention", "gru"), ("sum", "attention")])
def test_fusion_variants_and_long_term_weights(cyclic, fusion, short_term):
    split, text, inputs = cyclic
    config = dataclasses.replace(FAST, fusion=fusion, short_term=short_term, epochs=1)
    model = InterestModel(text, inputs, WINDOW, config, seed=1).fit(split)
    users = np.array([0, 1, -1])  # -1: a user the model has never seen (no profile, no context)
    histories = [split.train[0], split.train[1], np.array([3, 4])]
    vectors, long_weight = model.interest(users, histories)
    assert vectors.shape == (3, 32) and torch.isfinite(vectors).all()
    assert (0 <= long_weight).all() and (long_weight <= 1).all() and long_weight[2] == 0
    assert model.score(users, histories).shape == (3, split.num_items + 1)


def test_ablations_switch_parts_off(cyclic):
    split, text, inputs = cyclic
    no_profile = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, use_profile=False, epochs=1))
    no_profile.fit(split)
    assert (no_profile.interest(np.array([0]), [split.train[0]])[1] == 0).all()
    no_ids = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, use_ids=False, epochs=1))
    assert no_ids.net.items.id_embedding is None


@pytest.mark.parametrize("dropout, trained", [(0.0, True), (1.0, False)])
def test_profile_dropout_hides_the_long_term_input_during_training(cyclic, dropout, trained):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, profile_dropout=dropout, epochs=1))
    before = [p.detach().clone() for p in model.net.long_term.parameters()]
    model.fit(split)
    changed = [not torch.equal(old, new) for old, new in zip(before, model.net.long_term.parameters())]
    assert all(changed) if trained else not any(changed)


def test_save_and_load_give_the_same_scores(tmp_path, cyclic):
    split, text, inputs = cyclic
    model = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=3), seed=1).fit(split)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users, histories = split.test.users[:5], split.test.histories[:5]
    assert torch.equal(model.score(users, histories), loaded.score(users, histories))


def test_lora_adapters_attach_to_the_fusion(cyclic):
    from peft import LoraConfig, get_peft_model

    split, text, inputs = cyclic
    net = InterestNet(torch.from_numpy(text), torch.ones(len(text), dtype=torch.bool), 24, [2], FAST, WINDOW)
    targets = lora_targets(net)
    assert targets == ["text_proj", "long_term.0", "long_term.2", "fusion.gate", "fusion.out"]
    args = (torch.tensor([[0, 1, 2, 3]]), torch.zeros(1, 24), torch.tensor([True]), torch.tensor([[1]]))
    net.eval()
    before = net(*args)[0]
    adapted = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    adapted.eval()
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.allclose(adapted(*args)[0], before)  # LoRA B starts at zero


def test_graph_long_term_sources_train_without_leaking_the_predicted_items(tmp_path_factory):
    """`graph`: LightGCN over the long-term interactions only (the items before each user's profile cut-off);
    `graph+profile`: its vector beside the profile embedding. Both train and serve through the facade."""
    from llmrec.experiment import LONG_TERM_GRAPH
    from llmrec.pipeline import Recommender
    from online_fixture import tiny_run

    run = tiny_run(tmp_path_factory, interest={"profile_source": "graph+profile"},
                   lightgcn={"epochs": 2, "hidden_size": 8, "threads": 1})
    rec = Recommender.load(run)
    try:
        graph = rec.bundle.long_term_graph
        assert (run / "models" / LONG_TERM_GRAPH / "model.json").is_file()
        window = rec.config.profile.recent_items
        trained_pairs = sum(max(0, len(items) - window) for items in rec.split.train)
        assert graph.vectors[0].shape[0] == rec.split.num_users and trained_pairs > 0
        inputs = rec.model.features
        text_width = rec.item_vectors.shape[1]
        assert inputs.profiles.shape[1] == 8 + text_width  # graph part, then the profile text
        assert len(rec.recommend("u1", k=5)) == 5
        for item in ["i1", "i2", "i3", "i4", "i5", "i6"]:  # refreshed after 3 (nothing long-term yet) and 6
            rec.add_interaction("graph-newcomer", item)
        rec.wait_for_refreshes()
        row = rec.users.index("graph-newcomer")
        assert inputs.has_profile[row] and np.abs(inputs.profiles[row, :8]).sum() > 0  # folded into the graph
    finally:
        rec.close()

"""The online facade on a real tiny run: retrieval (ChromaDB and exact), reranking, hybrid lists, real-time
events, background profile refresh, persistence across restarts, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.data.split import EvalCases
from llmrec.errors import DataError, UnknownIdError
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.online.hybrid import TAGS, hybrid_list, quotas
from llmrec.ranking import Exclusion, top_items
from llmrec.pipeline import Recommender
from llmrec.rerank.reranker import Reranker, RerankScorer
from online_fixture import NEW_ITEM, hold, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture()
def recommender(run_dir):
    rec = Recommender.load(run_dir)
    yield rec
    rec.close()


def test_recommends_unseen_items_for_known_and_anonymous_users(recommender):
    seen = {recommender.split.item_id(i) for i in recommender.split.sequences[recommender.split.user_index("u1")]}
    items = recommender.recommend("u1", k=5)
    assert len(items) == 5 and not seen & {r.item_id for r in items}
    assert [r.score for r in items] == sorted((r.score for r in items), reverse=True)
    anonymous = recommender.recommend(history=["i3", "i4"], k=5, exclude=["i5"])
    assert not {"i3", "i4", "i5"} & {r.item_id for r in anonymous}


def test_chroma_retrieval_matches_exact_retrieval(run_dir):
    with_index = Recommender.load(run_dir, ["online.rerank=false"])
    exact = Recommender.load(run_dir, ["online.rerank=false", "online.retrieval=exact"])
    try:
        for user in ["u0", "u7", "u13"]:
            assert [r.item_id for r in with_index.recommend(user, k=8)] == \
                   [r.item_id for r in exact.recommend(user, k=8)]
    finally:
        with_index.close()
        exact.close()


def test_new_item_boost_lifts_items_without_interactions_in_chroma_and_exact_retrieval(run_dir):
    plain = Recommender.load(run_dir, ["online.rerank=false", "online.retrieval=exact"])
    try:
        before = {r.item_id: r.score for r in plain.recommend("u0", k=len(plain.split.item_ids))}
    finally:
        plain.close()
    for retrieval in ("index", "exact"):
        boosted = Recommender.load(run_dir, ["online.rerank=false", f"online.retrieval={retrieval}",
                                             "interest.new_item_boost=100"])
        try:
            top = boosted.recommend("u0", k=3)
        finally:
            boosted.close()
        assert top[0].item_id == NEW_ITEM and top[0].score == pytest.approx(before[NEW_ITEM] + 100, abs=1e-3)
        assert [r.score for r in top[1:]] == pytest.approx([before[r.item_id] for r in top[1:]], abs=1e-3)


def test_bad_requests_get_clear_errors(recommender):
    with pytest.raises(UnknownIdError, match="unknown user id 'nobody'"):
        recommender.recommend("nobody")
    with pytest.raises(UnknownIdError, match="unknown item id 'i999'"):
        recommender.recommend(history=["i1", "i999"])
    with pytest.raises(DataError, match="exactly one of"):
        recommender.recommend("u1", history=["i1"])
    with pytest.raises(DataError, match="k must be"):
        recommender.recommend("u1", k=0)
    with pytest.raises(DataError, match="unknown context key 'device'"):
        recommender.recommend("u1", context={"device": "mobile"})


def test_empty_history_gets_popular_items(recommender):
    items = recommender.recommend(history=[], k=3)
    assert len(items) == 3 and all(r.tag == "popular" for r in items)
    assert items[0].score == recommender.split.train_popularity().max()
    rest = recommender.recommend(history=[], k=3, exclude=[items[0].item_id])
    assert [r.item_id for r in rest[:2]] == [r.item_id for r in items[1:]]


@pytest.mark.parametrize("mode", ["default", "hybrid"])
def test_every_mode_leaves_out_the_history_and_the_excluded_items(recommender, mode):
    seen = {recommender.split.item_id(i) for i in recommender.split.sequences[recommender.split.user_index("u4")]}
    everything = recommender.recommend("u4", k=len(recommender.split.item_ids), mode=mode)
    assert len(everything) == len(recommender.split.item_ids) - len(seen)
    assert not seen & {r.item_id for r in everything}
    excluded = [r.item_id for r in everything[:2]]
    assert not set(excluded) & {r.item_id for r in recommender.recommend("u4", k=5, exclude=excluded, mode=mode)}


def test_the_rerank_scorer_keeps_a_repeated_target_rankable_like_retrieval(recommender):
    """The evaluator's exclusion reaches the reranker's candidates: a target the user had seen before is
    ranked by an untrained reranker (which keeps retrieval's order) exactly where retrieval ranks it."""
    model, split = recommender.model, recommender.split
    fresh = Reranker(model, recommender.item_vectors, split.train_popularity())
    cases = split.test.subset(np.arange(8))
    repeats = EvalCases(cases.users, [np.append(h, t) for h, t in zip(cases.histories, cases.targets)],
                        cases.targets)
    evaluator = FullRankingEvaluator(split, recommender.config.eval)
    retrieval = evaluator.rank(model, repeats).ranks
    assert np.isfinite(retrieval).all()
    assert np.array_equal(evaluator.rank(RerankScorer(fresh), repeats).ranks, retrieval)


def test_a_new_interaction_changes_the_next_recommendation_at_once(recommender):
    before = recommender.recommend("u2", k=5)
    ack = recommender.add_interaction("u2", before[0].item_id)
    after = recommender.recommend("u2", k=5)
    assert ack["event_id"] >= 1 and before[0].item_id not in {r.item_id for r in after}
    assert [r.item_id for r in after] != [r.item_id for r in before]


def test_new_users_profiles_refresh_in_the_background_and_survive_a_restart(run_dir):
    rec = Recommender.load(run_dir)
    user = "newcomer"
    for item in ["i1", "i2", "i3", "i4"]:
        ack = rec.add_interaction(user, item)
    assert ack["history_length"] == 4
    rec.wait_for_refreshes()  # every 3 events (tiny_run's online.profile_refresh_every)
    profile = rec.profile(user)
    summary = profile["profile"]  # the interest summary covers all four items (no long-term part yet: L=3)
    assert summary is not None and summary["provenance"]["cutoff"] == 4 and summary["n_long_term"] == 4
    assert "Typical picks" in summary["text"] and "none yet" not in summary["text"]
    listed = [r.item_id for r in rec.recommend(user, k=5)]
    rec.close()
    again = Recommender.load(run_dir)
    try:
        assert again.profile(user)["history_length"] == 4
        assert [r.item_id for r in again.recommend(user, k=5)] == listed
    finally:
        again.close()


def test_profile_reports_the_models_interest_weights(recommender):
    weights = recommender.profile("u3")["interest_weights"]
    assert weights["long_term"] + weights["short_term"] == pytest.approx(1.0)
    assert 0 <= weights["long_term"] <= 1


def test_explanations_cite_only_the_users_history(recommender):
    top = recommender.recommend("u4", k=1)[0]
    explanation = recommender.explain("u4", top.item_id)
    history = {recommender.split.item_id(i) for i in recommender.split.sequences[recommender.split.user_index("u4")]}
    cited = {item for item, _, _ in explanation["attribution"]["history"]}
    assert explanation["text"] and explanation["source"] == "attribution"
    assert {recommender.split.item_id(i) for i in cited} <= history
    weights = [w for _, _, w in explanation["attribution"]["history"]]
    assert weights == sorted(weights, reverse=True)


def test_hybrid_lists_tag_every_item_and_follow_the_mix(recommender):
    items = recommender.recommend("u5", k=10, mode="hybrid")
    assert len(items) == 10 and {r.tag for r in items} <= set(TAGS)
    seen = {recommender.split.item_id(i) for i in recommender.split.sequences[recommender.split.user_index("u5")]}
    assert len({r.item_id for r in items}) == 10 and not seen & {r.item_id for r in items}


def test_quotas_follow_the_shares_and_pass_on_missing_interests():
    mix = {"short-term": 0.5, "long-term": 0.3, "context": 0.2}
    assert quotas(mix, list(TAGS), 10) == {"short-term": 5, "long-term": 3, "context": 2}
    assert quotas(mix, ["short-term", "long-term"], 8) == {"short-term": 5, "long-term": 3}
    assert sum(quotas(mix, list(TAGS), 7).values()) == 7


def test_hybrid_list_takes_each_interests_best_items():
    table = torch.eye(4)  # item i (1..3) points along axis i
    components = torch.zeros(3, 4)
    components[0, 1], components[1, 2], components[2, 3] = 3.0, 2.0, 1.0
    chosen = hybrid_list(components, table, Exclusion([np.array([])]).mask(4)[0],
                         {"short-term": 1, "long-term": 1, "context": 1}, 3)
    assert {(t.item, t.tag) for t in chosen} == {(1, "short-term"), (2, "long-term"), (3, "context")}


def test_interest_components_add_up_to_the_interest_vector(recommender):
    model = recommender.model
    users, histories = np.array([0, 1]), [recommender.split.train[0], recommender.split.train[1]]
    vectors, _ = model.interest(users, histories)
    components = model.components(users, histories)
    assert torch.allclose(components.sum(1) + model.net.fusion.out.bias, vectors, atol=1e-5)


def test_an_untrained_reranker_keeps_retrievals_order_and_a_saved_one_reloads(recommender, tmp_path):
    model, split = recommender.model, recommender.split
    text, popularity = recommender.item_vectors, split.train_popularity()
    fresh = Reranker(model, text, popularity)
    users, histories = split.test.users[:6], split.test.histories[:6]
    queries = fresh.describe(users, histories)
    candidates = top_items(queries.interest @ recommender.table.T, Exclusion(histories), 10)
    assert torch.equal(fresh.rerank(queries, candidates).argsort(1, descending=True),
                       candidates.scores.argsort(1, descending=True))
    trained = recommender.reranker
    trained.save(tmp_path / "rerank")
    loaded = Reranker.load(tmp_path / "rerank", model, text, popularity, device="cpu")
    assert torch.equal(loaded.rerank(queries, candidates), trained.rerank(queries, candidates))


def test_reranking_leaves_out_history_padding_without_changing_scores(recommender):
    """Histories come left-padded to `rerank.history_len`; `rerank` drops the columns that are padding in every
    query, so its scores are those of the full padded width, for a batch and for each query alone."""
    reranker, split = recommender.reranker, recommender.split
    users, histories = split.test.users[:6], split.test.histories[:6]
    queries = reranker.describe(users, histories)
    assert max(map(len, histories)) < queries.histories.shape[1]
    candidates = top_items(queries.interest @ recommender.table.T, Exclusion(histories), 10)
    with torch.no_grad():
        padded = reranker.net(queries, candidates, reranker.net.text_features(queries, candidates))
    scores = reranker.rerank(queries, candidates)
    assert torch.allclose(scores, padded, atol=1e-5)
    for row in range(len(users)):
        alone = reranker.rerank(reranker.describe(users[row:row + 1], histories[row:row + 1]),
                                top_items(queries.interest[row:row + 1] @ recommender.table.T,
                                          Exclusion(histories[row:row + 1]), 10))
        assert torch.allclose(alone[0], scores[row], atol=1e-5)


def test_long_term_vectors_without_text_are_rebuilt_after_a_restart(tmp_path_factory):
    run = tiny_run(tmp_path_factory, interest={"profile_source": "mean-items"})
    rec = Recommender.load(run)
    for item in ["i1", "i2", "i3", "i4", "i5", "i6"]:  # refreshes after 3 (nothing long-term yet) and 6 events
        rec.add_interaction("reader", item)
    rec.wait_for_refreshes()
    row = rec.users.index("reader")
    before = rec.model.features.profiles[row].copy()
    rec.close()
    again = Recommender.load(run)
    try:
        row = again.users.index("reader")
        assert again.model.features.has_profile[row] and np.abs(before).sum() > 0
        assert np.allclose(again.model.features.profiles[row], before)
    finally:
        again.close()


def test_a_refresh_the_llm_worker_has_no_room_for_is_tried_at_the_next_interaction(run_dir):
    rec = Recommender.load(run_dir, ["online.llm_queue=1"])
    try:
        gate = hold(rec.llm_worker)
        waiting = rec.llm_worker.submit(lambda: None)  # the one background place is taken
        acks = [rec.add_interaction("patient", item) for item in ["i1", "i2", "i3"]]
        assert acks[-1]["profile_refresh"] is False  # due after 3 events, but refused at once
        gate.set()
        waiting.result(10)
        ack = rec.add_interaction("patient", "i4")
        assert ack["profile_refresh"] is True
        rec.wait_for_refreshes()
        assert rec.profile("patient")["profile"]["provenance"]["cutoff"] == 4
    finally:
        rec.close()


def test_llm_explanations_are_written_on_the_llm_worker(run_dir):
    rec = Recommender.load(run_dir, ["online.explain_with_llm=true", "llm.threads=1"])
    try:
        assert not rec.explainer.backend.loaded  # building the facade loads no LLM
        top = rec.recommend("u4", k=1)[0]
        explanation = rec.explain("u4", top.item_id, timeout_s=300)
        # the LLM answered in time (its sentence may still have failed a check and been replaced)
        assert explanation["degraded"] is None and explanation["text"]
        assert explanation["fallback_reason"] not in {"llm-busy", "llm-timeout", "llm-stopped"}
        assert rec.explainer.backend.loaded and rec.explainer.stats.explanations == 1
    finally:
        rec.close()
    assert not rec.explainer.backend.loaded

"""Items added, updated and deleted while serving: the durable item log, the serving catalog, and the facade and
HTTP API on a real tiny run (recommendable at once, exact and ChromaDB retrieval agree, replayed on restart)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from llmrec.claims import ClaimChecker
from llmrec.errors import ConflictError, DataError, DeletedItemError, UnknownIdError
from llmrec.models.base import put_rows
from llmrec.models.interest import InterestModel
from llmrec.models.text_neighbours import text_neighbours
from llmrec.online.item_log import ItemChange, ItemLog
from llmrec.online.items import ItemBook
from llmrec.pipeline import Recommender
from llmrec.profiles.facts import CatalogFacts
from llmrec.service import create_app
from online_fixture import NEW_ITEM, tiny_run

ADDED_TEXT = "a film everybody will see"


# ------------------------------------------------------------------------------------------------ the item log

def test_the_log_keeps_changes_in_order_across_reopening(tmp_path):
    log = ItemLog(tmp_path / "items.sqlite", max_text_chars=100)
    added = log.append("add", " n1 ", "Dark\x1b[31m crime\x00 novel", title="Snow", categories=["Crime", "Crime"])
    log.append("update", "n1", "a brighter novel")
    log.append("delete", "n1")
    assert (added.item_id, added.text, added.title, added.categories) == ("n1", "Dark crime novel", "Snow",
                                                                           ("Crime",))
    changes = ItemLog(tmp_path / "items.sqlite", max_text_chars=100).items_since(0)
    assert [c.action for c in changes] == ["add", "update", "delete"] and changes[0] == added
    assert [c.log_id for c in log.items_since(added.log_id)] == [c.log_id for c in changes[1:]]


@pytest.mark.parametrize("args, message", [
    (("add", "n1", "   "), "text is empty"),
    (("add", "n1", "x" * 101), "text has 101 characters; at most 100"),
    (("add", "n1", 42), "text must be a string"),
    (("add", "", "text"), "item_id must not be empty"),
    (("add", "n\x001", "text"), "item_id contains control characters"),
    (("add", "n1", "text", None, "Crime"), "categories must be a list of strings"),
    (("add", "n1", "text", None, [1]), "categories must be a list of strings"),
    (("rename", "n1", "text"), "action must be one of add, update, delete"),
])
def test_bad_changes_are_refused_before_they_are_logged(tmp_path, args, message):
    log = ItemLog(tmp_path / "items.sqlite", max_text_chars=100)
    with pytest.raises(DataError, match=message):
        log.append(*args)
    assert log.count() == 0


def test_the_item_book_checks_ids_and_keeps_indices_stable():
    book = ItemBook(["a", "b"], ["text a", "text b"], np.eye(3, 4, dtype=np.float32))

    def change(action, item_id, text=""):
        return ItemChange(0, action, item_id, text, "", (), 0.0)

    assert book.apply(change("add", "c", "text c"), np.ones(4)) == 3 and book.item_index("c") == 3
    assert book.texts[3] == "text c" and book.vectors[3].tolist() == [1, 1, 1, 1] and book.added == [3]
    with pytest.raises(ConflictError, match="'a' already exists"):
        book.check("add", "a")
    with pytest.raises(ConflictError, match="comes from the dataset's catalog"):
        book.check("update", "b")
    with pytest.raises(UnknownIdError, match="unknown item id 'z'"):
        book.check("delete", "z")
    book.apply(change("delete", "c"), np.zeros(4))
    assert book.item_index("c") == 3 and book.deleted.tolist() == [3]
    with pytest.raises(DeletedItemError, match="'c' was deleted"):
        book.live_index("c")
    with pytest.raises(ConflictError, match="ids are not reused"):
        book.check("add", "c")
    for n in range(40):  # the vector buffer grows as items arrive
        book.apply(change("add", f"x{n}", "t"), np.full(4, n))
    assert len(book) == 44 and book.vectors.shape == (44, 4) and book.vectors[-1, 0] == 39


def test_put_rows_replaces_and_appends_in_order():
    table = torch.zeros(3, 2)
    grown = put_rows(table, torch.tensor([1, 3, 4]), torch.tensor([[1.0, 1], [3, 3], [4, 4]]))
    assert grown.tolist() == [[0, 0], [1, 1], [0, 0], [3, 3], [4, 4]] and table.sum() == 0
    with pytest.raises(ValueError, match="next indices"):
        put_rows(table, torch.tensor([4]), torch.ones(1, 2))


def test_the_claim_checker_follows_the_facts():
    facts = CatalogFacts(["", "i1"], ["", "Heat Wave"], [(), ("Drama",)], np.array([0.0, 1.0]))
    checker = ClaimChecker.from_facts(facts)
    facts.put(2, "i2", "The Snow Queen", ["Crime"])
    assert checker.titles[2] == "The Snow Queen" and facts.popularity.tolist() == [0.0, 1.0, 0.0]
    report = checker.check("They read The Snow Queen, a crime story.", [1])
    assert report.unsupported["title"] == ["The Snow Queen"] and report.unsupported["category"] == ["Crime"]
    assert checker.check("They read The Snow Queen, a crime story.", [2]).reason is None


# ------------------------------------------------------------------------------------------------ the facade

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture()
def logs(tmp_path):
    """This test's own state folder, so its own item and event logs (the run and its bundle are shared by the
    module's tests)."""
    return [f"online.state_dir={tmp_path / 'state'}"]


def load(run_dir, logs, *overrides):
    return Recommender.load(run_dir, [*logs, *overrides])


BOOSTED = ["online.rerank=false", "interest.new_item_boost=100"]
"""Items without an ID row on top (the catalog's NEW_ITEM and every added item), in their text score order."""


def test_an_added_item_is_recommended_at_once_by_exact_and_chroma_retrieval_alike(run_dir, logs):
    lists = {}
    for retrieval in ("exact", "index"):
        rec = load(run_dir, logs, *BOOSTED, f"online.retrieval={retrieval}")
        try:
            if retrieval == "exact":
                assert NEW_ITEM in [r.item_id for r in rec.recommend("u0", k=1)]
                ack = rec.add_item("added-1", ADDED_TEXT, title="Everybody's Film", categories=["Drama"])
                assert ack["item_id"] == "added-1" and ack["action"] == "add" and ack["log_id"] > 0
            lists[retrieval] = {user: [(r.item_id, round(r.score, 3)) for r in rec.recommend(user, k=6)]
                                for user in ("u0", "u5", "u11")}
            lists[retrieval]["anonymous"] = [r.item_id for r in rec.recommend(history=["i3", "i4"], k=6)]
        finally:
            rec.close()
    assert lists["exact"] == lists["index"]
    assert all({"added-1", NEW_ITEM} == {item for item, _ in top[:2]}
               for user, top in lists["exact"].items() if user != "anonymous")


def test_items_and_the_events_naming_them_survive_a_restart(run_dir, logs):
    rec = load(run_dir, logs)
    try:
        rec.add_item("added-2", ADDED_TEXT, title="Everybody's Film", categories=["Drama"])
        rec.add_interaction("walk-in", "i3")
        rec.add_interaction("walk-in", "added-2")
        before = [r.item_id for r in rec.recommend("walk-in", k=5)]
        assert "added-2" not in before  # seen
        explanation = rec.explain("walk-in", "added-2")
        assert explanation["text"]
    finally:
        rec.close()
    again = load(run_dir, logs)
    try:
        assert [r.item_id for r in again.recommend("walk-in", k=5)] == before
        assert again.items.item_index("added-2") == len(again.split.item_ids) + 1
        assert again.explainer.titles[again.items.item_index("added-2")] == "Everybody's Film"
        assert again.profile("walk-in")["history_length"] == 2
    finally:
        again.close()


def test_an_update_changes_the_items_vector_and_a_delete_removes_it(run_dir, logs):
    rec = load(run_dir, logs, *BOOSTED, "online.retrieval=exact")
    try:
        rec.add_item("added-3", ADDED_TEXT)
        scores = {r.item_id: r.score for r in rec.recommend("u0", k=3)}
        rec.update_item("added-3", "item number 4", title="Number Four", categories=["Numbers"])
        updated = {r.item_id: r.score for r in rec.recommend("u0", k=3)}
        assert updated["added-3"] != pytest.approx(scores["added-3"], abs=1e-4)
        assert rec.items.texts[rec.items.item_index("added-3")] == "item number 4"
        rec.delete_item("added-3")
        rec.delete_item(NEW_ITEM)  # a catalog item may be deleted too
        gone = [r.item_id for r in rec.recommend("u0", k=len(rec.items))]
        anonymous = [r.item_id for r in rec.recommend(history=["added-3"], k=len(rec.items), mode="hybrid")]
        assert not {"added-3", NEW_ITEM} & (set(gone) | set(anonymous))
        with pytest.raises(DeletedItemError, match="'added-3' was deleted"):
            rec.add_interaction("u0", "added-3")
        with pytest.raises(DeletedItemError):
            rec.update_item("added-3", "again")
    finally:
        rec.close()
    again = load(run_dir, logs, *BOOSTED, "online.retrieval=exact")
    try:
        assert not {"added-3", NEW_ITEM} & {r.item_id for r in again.recommend("u0", k=len(again.items))}
        with pytest.raises(ConflictError, match="ids are not reused"):
            again.add_item("added-3", "once more")
    finally:
        again.close()


def test_added_items_take_their_text_neighbours_id_parts_and_the_saved_model_keeps_the_trained_items(run_dir,
                                                                                                      logs):
    rec = load(run_dir, logs, "interest.new_item_boost=2.5")
    try:
        rows = len(rec.retrieval_table)
        rec.add_item("added-6", ADDED_TEXT)
        table = rec.retrieval_table
        assert len(table) == rows + 1 and table[-1, -1] == 2.5
        tower, config = rec.model.net.items, rec.model.config
        text_only = tower.text_proj(torch.as_tensor(rec.item_vectors[-1]))
        neighbours, weights = text_neighbours(torch.as_tensor(rec.item_vectors), torch.tensor([rows]),
                                              tower.seen[:, 0] > 0, config.new_item_neighbours,
                                              config.new_item_temperature)
        borrowed = weights[0] @ tower.id_embedding.weight[neighbours[0]]
        assert config.new_item_neighbours > 0 and bool(tower.seen[neighbours[0]].all())  # warm items only
        hidden = tower.text_proj.out_features  # the item tower's coordinates (then the content score's, the boost)
        assert torch.allclose(table[-1, :hidden], text_only + borrowed, atol=1e-5)
        histories = torch.tensor([[0, 1, rows]])  # inference embeds a history's items alone: the added one too
        assert torch.allclose(rec.model.net.items.rows(histories)[0], rec.table[histories[0]], atol=1e-5)
        saved = InterestModel.from_state(*rec.model.state(), rec.model.features)
        assert torch.allclose(saved.retrieval_table(), rec.retrieval_table[:rows], atol=1e-6)
    finally:
        rec.close()


@pytest.fixture(scope="module")
def content_run_dir(tmp_path_factory):
    """The tiny run with the frozen-content score (`interest.content_weight`)."""
    return tiny_run(tmp_path_factory, interest={"content_weight": 5.0})


def test_with_the_content_score_exact_and_chroma_retrieval_rank_cold_and_added_items_alike(content_run_dir, logs):
    lists = {}
    for retrieval in ("exact", "index"):
        rec = load(content_run_dir, logs, "online.rerank=false", f"online.retrieval={retrieval}")
        try:
            if retrieval == "exact":
                rec.add_item("added-c", "item number 4")  # a warm item's text
                text = torch.nn.functional.normalize(torch.as_tensor(rec.item_vectors[-1]), dim=0)
                assert torch.allclose(rec.retrieval_table[-1, rec.table.shape[1]:-1], text, atol=1e-6)
            lists[retrieval] = {user: [(r.item_id, round(r.score, 3)) for r in rec.recommend(user, k=len(rec.items))]
                                for user in ("u0", "u5", "u11")}
        finally:
            rec.close()
    assert lists["exact"] == lists["index"]
    assert all({"added-c", NEW_ITEM} <= {item for item, _ in ranked} for ranked in lists["exact"].values())


def test_bad_item_changes_get_clear_errors_and_change_nothing(run_dir, logs):
    rec = load(run_dir, logs, "online.max_text_chars=40")
    try:
        with pytest.raises(ConflictError, match="'i1' already exists"):
            rec.add_item("i1", "a duplicate")
        with pytest.raises(ConflictError, match="comes from the dataset's catalog"):
            rec.update_item("i1", "new text")
        with pytest.raises(UnknownIdError, match="unknown item id 'nothing'"):
            rec.delete_item("nothing")
        with pytest.raises(DataError, match="at most 40"):
            rec.add_item("long", "x" * 41)
        with pytest.raises(DataError, match="text is empty"):
            rec.add_item("blank", "\x00\x1b[31m \u200b")
        assert rec.item_log.count() == 0 and len(rec.items) == len(rec.split.item_ids) + 1
        rec.add_item("clean", "dark\x07 crime\u200b novel")
        assert rec.recommend(history=["clean"], k=1)
        assert rec.items.texts[-1] == "dark crime novel"
    finally:
        rec.close()


def test_the_reranker_scores_added_items_in_histories_and_candidates(run_dir, logs):
    rec = load(run_dir, logs, "interest.new_item_boost=100")
    try:
        assert rec.reranker is not None
        rec.add_item("added-4", ADDED_TEXT)
        rec.add_item("added-5", "item number 7")
        top = [r.item_id for r in rec.recommend(history=["i2", "added-4"], k=3)]
        assert "added-5" in top and "added-4" not in top
    finally:
        rec.close()


# ------------------------------------------------------------------------------------------------ HTTP

def test_the_http_api_adds_updates_and_deletes_items(run_dir, logs):
    rec = load(run_dir, logs, *BOOSTED)
    try:
        with TestClient(create_app(rec)) as client:
            body = {"item_id": "web-1", "text": ADDED_TEXT, "title": "Web Film", "categories": ["Drama"]}
            created = client.post("/items", json=body)
            assert created.status_code == 201 and created.json()["action"] == "add", created.text
            top = client.post("/recommend", json={"user_id": "u0", "k": 2}).json()["items"]
            assert "web-1" in {item["item_id"] for item in top}
            assert client.post("/items", json=body).status_code == 409
            updated = client.put("/items/web-1", json={"text": "item number 2"})
            assert updated.status_code == 200 and updated.json()["log_id"] > created.json()["log_id"]
            assert client.put("/items/i1", json={"text": "x"}).status_code == 409
            assert client.put("/items/nothing", json={"text": "x"}).status_code == 404
            assert client.delete("/items/web-1").status_code == 200
            assert client.delete("/items/web-1").status_code == 404
            assert client.post("/events", json={"user_id": "u0", "item_id": "web-1"}).status_code == 404
            for bad, message in [({**body, "item_id": "web-2", "price": 3}, "price: Extra inputs are not permitted"),
                                 ({"item_id": "web-2", "text": ""}, "text: String should have at least 1"),
                                 ({"item_id": "web-2", "text": "x" * 2001}, "at most 2000 are allowed")]:
                response = client.post("/items", json=bad)
                assert response.status_code == 422 and message in response.json()["error"], response.text
            assert {"/items", "/items/{item_id}"} <= set(client.get("/openapi.json").json()["paths"])
    finally:
        rec.close()

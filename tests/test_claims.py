"""The one claim checker of profiles and explanations: titles, categories, item ids and numbers a text names,
against the items it may talk about."""

from __future__ import annotations

from llmrec.claims import ClaimChecker
from llmrec.explain import Attribution, Explainer
from llmrec.llm.base import Generation, GenerationParams

TITLES = ["", "Heat (1995)", "Sense and Sensibility (1995)", "Toy Story (1995)", "Pro Nail Kit B00ABC1234"]
CATEGORIES = [(), ("Action", "Crime", "Thriller"), ("Drama", "Romance"), ("Animation", "Comedy"),
              ("Beauty > Nails",)]
IDS = ["", "m1", "m2", "m3", "B00NAIL777"]
CHECKER = ClaimChecker(TITLES, CATEGORIES, IDS)


def test_claims_the_items_back_are_cited_the_others_reported_by_kind():
    text = "Sense and Sensibility (1995) is a drama and a romance, and a thriller like Toy Story (1995)."
    report = CHECKER.check(text, items=[2])
    assert report.cited_titles == ["Sense and Sensibility (1995)"]
    assert report.cited_categories == ["Drama", "Romance"]
    assert report.unsupported["title"] == ["Toy Story (1995)"] and report.unsupported["category"] == ["Thriller"]
    assert report.reason == "unsupported-title"
    assert CHECKER.check("A classic romance with strong drama.", items=[2]).reason is None
    assert CHECKER.check("Sense and Sensibility is a comedy.", items=[2]).reason == "unsupported-category"


def test_item_ids_paths_and_numbers():
    assert CHECKER.check("Try B00NAIL777 for your nails.", items=[4]).reason is None  # `Beauty > Nails`: "nails"
    assert CHECKER.check("Try B00NAIL777 next.", items=[1]).unsupported["item-id"] == ["B00NAIL777"]
    assert CHECKER.check("It matches your taste (42%).", items=[1], numbers=[41.6]).reason is None
    assert CHECKER.check("It matches your taste (90%).", items=[1], numbers=[41.6]).reason == "unsupported-number"


class OneReply:
    model_id = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, prompts, params):
        return [Generation(self.text, 10, 10) for _ in prompts]

    def close(self) -> None:
        pass


def test_an_explanation_with_a_wrong_genre_falls_back_and_says_why():
    attribution = Attribution(item=2, history=[(3, "Toy Story (1995)", 0.6)], profile_sentences=[])
    reply = "Sense and Sensibility (1995) is a drama, picked for Toy Story (1995) (60%), and a romance."
    right = Explainer(CHECKER, OneReply(reply), GenerationParams())
    kept = right.explain("m2", attribution, history=[3])
    assert kept.source == "llm" and kept.cited_titles == ["Sense and Sensibility (1995)", "Toy Story (1995)"]
    assert kept.cited_categories == ["Drama", "Romance"]
    thriller = Explainer(CHECKER, OneReply("Sense and Sensibility (1995) is a thriller."), GenerationParams())
    fallback = thriller.explain("m2", attribution, history=[3])
    assert fallback.source == "attribution" and fallback.fallback_reason == "unsupported-category"
    assert thriller.stats.fallbacks == {"unsupported-category": 1}


def test_words_inside_a_cited_title_are_not_claims_of_their_own():
    titles = ["", "Essie Nail Polish, Ballet Slippers", "Nail Polish", "Lip Balm"]
    checker = ClaimChecker(titles, [(), ("Beauty > Nails",), ("Beauty > Nails",), ("Beauty > Lips",)])
    text = 'Lip Balm suits you like "Essie Nail Polish, Ballet Slippers".'
    report = checker.check(text, items=[1, 3])
    assert report.reason is None  # "Nail Polish" (item 2) and "Nail" are read inside the cited title
    assert report.cited_titles == ["Essie Nail Polish, Ballet Slippers", "Lip Balm"]
    assert checker.check("Lip Balm for your nails.", items=[3]).unsupported["category"] == ["Beauty > Nails"]
    assert checker.check("Nail Polish and Lip Balm.", items=[3]).unsupported["title"] == ["Nail Polish"]

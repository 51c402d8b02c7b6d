"""Explanations of recommendations: attribution to history items and profile sentences, then an LLM sentence
checked for faithfulness, with the attribution's own text as the fallback."""

from llmrec.explain.attribution import Attribution, attribute, attribution_text
from llmrec.explain.explainer import Explainer, ExplainerStats, Explanation, explanation_values

__all__ = ["Attribution", "Explainer", "ExplainerStats", "Explanation", "attribute", "attribution_text",
           "explanation_values"]

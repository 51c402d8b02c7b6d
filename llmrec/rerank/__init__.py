"""Reranking the interest model's retrieved candidates (see `reranker.Reranker`)."""

from llmrec.rerank.candidates import Candidates, Queries, exact_candidates, index_candidates, item_table
from llmrec.rerank.reranker import Reranker, RerankScorer, resolve_device

__all__ = ["Candidates", "Queries", "Reranker", "RerankScorer", "exact_candidates", "index_candidates",
           "item_table", "resolve_device"]

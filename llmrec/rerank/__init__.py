"""Reranking the interest model's retrieved candidates (see `reranker.Reranker`)."""

from llmrec.rerank.candidates import Candidates, Queries, exact_candidates, index_candidates, item_table
from llmrec.rerank.reranker import Reranker, RerankScorer

__all__ = ["Candidates", "Queries", "Reranker", "RerankScorer", "exact_candidates", "index_candidates",
           "item_table"]

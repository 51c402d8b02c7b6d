"""Reranking the interest model's retrieved candidates (see `reranker.Reranker`)."""

from llmrec.rerank.candidates import Queries, index_candidates, item_table
from llmrec.rerank.reranker import Reranker, RerankScorer

__all__ = ["Queries", "Reranker", "RerankScorer", "index_candidates", "item_table"]

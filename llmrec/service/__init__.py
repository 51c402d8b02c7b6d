"""The HTTP service: `create_app(recommender)` builds the FastAPI application that `llmrec serve` runs."""

from llmrec.service.app import create_app

__all__ = ["create_app"]

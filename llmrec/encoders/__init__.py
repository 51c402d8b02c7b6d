"""Item text encoders (`item_encoder.ItemEncoder`) and their on-disk embedding cache (`cache.EmbeddingCache`).

Import from the submodules; this package does not import sentence-transformers until you do.
"""

"""The ChromaDB item index (`chroma_index.ItemIndex`): embedded or server, explicit HNSW parameters.

Import from the submodule; this package does not import chromadb until you do.
"""

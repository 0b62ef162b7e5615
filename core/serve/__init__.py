"""Serving a trained model: the published classifier and the UMAP projection of its embeddings."""

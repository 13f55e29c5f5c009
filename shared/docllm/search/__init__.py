"""Retrieval: the technical-text analyzer, the embedded BM25 engine, the search API model and evaluation."""

"""Retrieval benchmark: embedded FTS5 engine vs plain bm25s, a dev set builder and an HTTP load client."""

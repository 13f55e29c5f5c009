"""Serving benchmark: engines side by side, ``/v1/ask`` latency, answer quality on a dev set."""

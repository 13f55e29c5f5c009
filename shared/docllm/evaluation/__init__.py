"""Evaluation: the report of a model version, its metrics and its self-contained HTML page."""

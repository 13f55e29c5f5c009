"""Adapters: ``aws`` (boto3, opensearch-py) and ``local`` (embedded) for every port."""

"""Ports: the small interfaces behind which every side effect sits.

Each port has two adapters, ``docllm.adapters.aws`` and ``docllm.adapters.local``,
and one contract test suite in ``tests/integration/contracts`` that runs against both.
"""

"""The suite's own pytest set-up: third-party packages import without pytest's assert rewriting.

pytest rewrites a module with ``ast.parse`` when it is first imported, and CPython 3.11.7 shares the
AST constructor's recursion depth between threads (gh-106905): a lazy import of a rewritten module
during a test, while the local platform's threads parsed too, failed CI at random. pyproject's
``addopts`` names the one plugin the suite uses instead of autoloading every plugin distribution.
"""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["schemathesis.generation.dictionaries", "hypothesis.strategies", "anyio.abc"])
def test_plugin_distributions_are_imported_without_assert_rewriting(module: str) -> None:
    loaded = importlib.import_module(module)
    assert type(loaded.__loader__).__name__ != "AssertionRewritingHook", module


def test_hypothesis_pytest_plugin_is_still_loaded(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("_hypothesis_pytestplugin")

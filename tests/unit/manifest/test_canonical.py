"""Canonical JSON: one byte sequence per value, and nothing JSON cannot hold."""

from __future__ import annotations

import math

import pytest

from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.exceptions import ManifestError


def test_keys_are_sorted_at_every_depth_and_there_is_no_whitespace() -> None:
    assert canonical_json({"b": {"z": 1, "a": [2, {"y": None, "x": True}]}, "a": 1.5}) == (
        b'{"a":1.5,"b":{"a":[2,{"x":true,"y":null}],"z":1}}'
    )


def test_the_same_value_built_in_another_order_gives_the_same_bytes() -> None:
    a = {"one": 1, "two": [1, 2], "three": {"x": "y", "p": "q"}}
    b = {"three": {"p": "q", "x": "y"}, "two": [1, 2], "one": 1}
    assert canonical_json(a) == canonical_json(b)
    assert sha256_hex(canonical_json(a)) == sha256_hex(canonical_json(b))


def test_text_is_utf8_with_only_the_escapes_json_requires() -> None:
    assert canonical_json({"k": 'é€😀 "q" \\ \n\t\x01'}) == '{"k":"é€😀 \\"q\\" \\\\ \\n\\t\\u0001"}'.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    with pytest.raises(ManifestError, match="not canonical"):
        canonical_json({"loss": [1.0, bad]})


def test_keys_that_are_not_strings_are_refused() -> None:
    with pytest.raises(ManifestError, match="not a string"):
        canonical_json({"a": {1: "x"}})


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(ManifestError, match="JSON-compatible"):
        canonical_json({"a": {1, 2}})


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ManifestError):
        canonical_json({"a": "\ud800"})


def test_sha256_hex_is_lowercase_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

"""Canonical JSON: one byte sequence per value, so a digest names the value and nothing else.

The rules are those of RFC 8785 (JSON Canonicalization Scheme) that matter for what we write:
object keys sorted, no insignificant whitespace, UTF-8 output with only the escapes JSON
requires (``"``, ``\\`` and control characters), and no NaN or Infinity, which JSON cannot hold
(they are refused, never written as ``NaN``).

Where it differs from full JCS, and why that is fine:

* **Numbers** are written by Python (``repr`` of a float: shortest round-trip digits, e.g.
  ``1e-07`` and ``1.0``), where JCS prescribes ECMAScript's ``Number.prototype.toString``
  (``1e-7`` and ``1``); integers beyond 2**53 are written exactly rather than as doubles.
* **Key order** is by code point, where JCS orders by UTF-16 code unit; the two differ only for
  keys mixing characters above U+FFFF with ones in U+E000..U+FFFF, which our keys never hold.

Nothing re-canonicalises a manifest to check it: the signature covers the exact payload bytes
and the chain digests cover the exact stored envelope bytes, so a verifier only ever hashes the
bytes we wrote. Canonical form matters for *us* (the same statement always gives the same
bytes, so a re-issue after a crash is byte-identical), not for the verifier.

>>> canonical_json({"b": 1, "a": [True, None, "é"]})
b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from docllm.manifest.exceptions import ManifestError


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a JSON-compatible ``value``.

    Raises
    ------
    ManifestError
        For NaN or ±Infinity, keys that are not strings, values JSON cannot hold, or text that
        is not valid Unicode (a lone surrogate).
    """
    _check_keys(value)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except ValueError as e:  # NaN/Infinity ("Out of range float values"), and UnicodeEncodeError
        raise ManifestError(f"not canonical JSON: {e}") from e
    except TypeError as e:
        raise ManifestError(f"not JSON-compatible: {e}") from e


def _check_keys(value: Any) -> None:
    # json.dumps would quietly turn int/float/bool/None keys into strings: two values, one encoding.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ManifestError(f"not canonical JSON: object key {k!r} is not a string")
            _check_keys(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_keys(v)


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data`` (the digest form used throughout a manifest)."""
    return hashlib.sha256(data).hexdigest()

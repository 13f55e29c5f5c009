"""EventBridge event-pattern matching with AWS's semantics.

A pattern is a mapping; every key in it must match. A nested mapping matches a
nested object. A list is a set of alternatives matched against the event's
value (or, for an array value, against any of its elements). An alternative
is a literal (string, number, ``null``, bool) or a one-key operator:
``prefix``, ``suffix``, ``anything-but``, ``exists``, ``numeric``,
``equals-ignore-case``, ``wildcard``. A missing field matches only
``{"exists": false}``.

>>> matches({"source": ["aws.s3"]}, {"source": "aws.s3", "detail": {}})
True
>>> matches({"detail": {"key": [{"prefix": "s3/"}]}}, {"detail": {"key": "ec2/a.md"}})
False
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()

_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """The pattern uses an operator this matcher does not know, or is malformed."""


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    for key, expected in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if value is _MISSING or not isinstance(value, Mapping):
                return False
            if not matches(expected, value):
                return False
        elif isinstance(expected, list):
            if not _field_matches(expected, value):
                return False
        else:
            raise PatternError(f"pattern values must be lists or objects, got {expected!r} at {key!r}")
    return True


def _field_matches(alternatives: list[Any], value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for alt in alternatives:
        if isinstance(alt, Mapping):
            if _operator_matches(alt, value, values):
                return True
        elif value is not _MISSING and any(_literal_equal(alt, v) for v in values):
            return True
    return False


def _literal_equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    return bool(expected == actual)


def _operator_matches(op: Mapping[str, Any], value: Any, values: list[Any]) -> bool:
    if len(op) != 1:
        raise PatternError(f"an operator object takes exactly one key: {dict(op)!r}")
    ((name, arg),) = op.items()
    if name == "exists":
        return (value is not _MISSING) == bool(arg)
    if value is _MISSING:
        # anything-but also needs the field to be present, as in EventBridge.
        return False
    if name == "prefix":
        return any(_string_op(arg, v, str.startswith) for v in values)
    if name == "suffix":
        return any(_string_op(arg, v, str.endswith) for v in values)
    if name == "equals-ignore-case":
        return any(isinstance(v, str) and v.casefold() == str(arg).casefold() for v in values)
    if name == "wildcard":
        return any(isinstance(v, str) and fnmatch.fnmatchcase(v, str(arg)) for v in values)
    if name == "numeric":
        return any(_numeric(arg, v) for v in values)
    if name == "anything-but":
        return all(not _anything_but_hits(arg, v) for v in values)
    raise PatternError(f"unsupported pattern operator {name!r}")


def _string_op(arg: Any, value: Any, fn: Callable[[str, str], bool]) -> bool:
    if isinstance(arg, Mapping):  # {"prefix": {"equals-ignore-case": "x"}}
        ((inner, text),) = arg.items()
        if inner != "equals-ignore-case":
            raise PatternError(f"unsupported nested operator {inner!r}")
        return isinstance(value, str) and fn(value.casefold(), str(text).casefold())
    return isinstance(value, str) and fn(value, str(arg))


def _numeric(arg: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if len(arg) % 2:
        raise PatternError(f"numeric takes operator/value pairs: {arg!r}")
    for i in range(0, len(arg), 2):
        fn = _NUMERIC_OPS.get(arg[i])
        if fn is None:
            raise PatternError(f"unknown numeric operator {arg[i]!r}")
        if not fn(float(value), float(arg[i + 1])):
            return False
    return True


def _anything_but_hits(arg: Any, value: Any) -> bool:
    """True when ``value`` is one of the things ``anything-but`` excludes."""
    if isinstance(arg, Mapping):
        ((inner, text),) = arg.items()
        if inner == "prefix":
            return isinstance(value, str) and value.startswith(str(text))
        if inner == "suffix":
            return isinstance(value, str) and value.endswith(str(text))
        if inner == "equals-ignore-case":
            texts = text if isinstance(text, list) else [text]
            return isinstance(value, str) and value.casefold() in {str(t).casefold() for t in texts}
        raise PatternError(f"unsupported anything-but operator {inner!r}")
    excluded = arg if isinstance(arg, list) else [arg]
    return any(_literal_equal(e, value) for e in excluded)

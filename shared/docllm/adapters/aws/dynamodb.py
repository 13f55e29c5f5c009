"""DynamoDB adapter of :class:`docllm.ports.state.StateStore`.

Items are stored as top-level attributes beside the ``pk``/``sk`` keys (so a
TTL attribute or a GSI key can be an item field). Values go through boto3's
:class:`~boto3.dynamodb.types.TypeSerializer`, which refuses ``float``:
floats are converted to :class:`~decimal.Decimal` from their shortest
``repr`` (``0.1`` is stored as ``0.1``, not as the binary expansion), and
numbers read back become ``int`` when integral, ``float`` otherwise. So
``1.0`` comes back as ``1`` (equal in Python and JSON) and NaN/infinity are
refused, since DynamoDB has no such numbers.

Pages (:meth:`DynamoStateStore.query_page`) are one ``Query`` each (a few when a filter is sparse): the
sort-key range encodes the prefix and the page's start, so a page reads its own items, not the
partition's. Counts (:meth:`DynamoStateStore.count_by`) read the partition: DynamoDB has no aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from docllm.adapters.aws.errors import aws_errors
from docllm.exceptions import PermanentError
from docllm.ports.state import Item, Put, StateStore, Write, check_transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ATTRIBUTES = ("pk", "sk")

#: A filtered page (``where``) evaluates at most this many items in one :meth:`DynamoStateStore.query_page`
#: call, however few of them match: DynamoDB applies ``Limit`` before the filter, so a sparse filter would
#: otherwise read the whole partition for one page.
QUERY_PAGE_MAX_EVALUATED = 2000
#: ... and sends at most this many ``Query`` requests (each reads at most 1 MB, so big items stop it first).
QUERY_PAGE_MAX_REQUESTS = 20
#: The ``Limit`` of one filtered request (at least what the page still needs): fewer round trips when the
#: filter is sparse, a few items read past the page when it is dense.
QUERY_PAGE_FILTERED_BATCH = 200


class UnstorableItemError(PermanentError):
    """The item cannot be stored (reserved key attribute, NaN or infinity)."""


def to_dynamo_value(value: Any) -> Any:
    """Replace floats by Decimals, recursively, for :class:`TypeSerializer`.

    Examples
    --------
    >>> to_dynamo_value({"a": [0.1, 2]})
    {'a': [Decimal('0.1'), 2]}
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableItemError(f"DynamoDB cannot store {value!r}")
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo_value(v) for v in value]
    return value


def from_dynamo_value(value: Any) -> Any:
    """Replace Decimals by ``int`` (integral) or ``float``, recursively.

    Examples
    --------
    >>> from_dynamo_value({"n": Decimal("3"), "x": [Decimal("0.5")]})
    {'n': 3, 'x': [0.5]}
    """
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo_value(v) for v in value]
    if isinstance(value, set):
        # Only written by other tools (the port writes lists); JSON has no sets.
        return sorted(from_dynamo_value(v) for v in value)
    return value


class QueryPage(list[tuple[str, Item]]):
    """The rows of :meth:`DynamoStateStore.query_page` (a ``list``, as the port promises).

    ``resume_after`` is ``None`` unless a filtered page stopped at its cap
    (:data:`QUERY_PAGE_MAX_EVALUATED` items or :data:`QUERY_PAGE_MAX_REQUESTS` requests) before finding
    ``limit`` rows and before the range's end: it is then the sort key of the last item evaluated, and the
    next page is ``query_page(..., after=resume_after)`` (the items skipped did not match).
    """

    resume_after: str | None = None


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``; ``None`` when there is none.

    DynamoDB orders strings by their UTF-8 bytes, which is code point order (Python's ``str`` order), so
    the strings that start with ``prefix`` are exactly those in ``[prefix, prefix_end(prefix))``: the
    last character goes up by one code point (over the surrogates, which UTF-8 cannot encode), or is
    dropped when it is U+10FFFF, the last code point.

    Examples
    --------
    >>> prefix_end("docs/")
    'docs0'
    >>> prefix_end("a\U0010ffff") == "b", prefix_end("\ud7ff") == "\ue000", prefix_end("\U0010ffff")
    (True, True, None)
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            return "".join(chars) + chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
    return None


@dataclass(frozen=True)
class _Bound:
    key: str
    inclusive: bool


def _sk_bounds(prefix: str, after: str | None, descending: bool) -> tuple[_Bound | None, _Bound | None] | None:
    """The sort keys of a page: starting with ``prefix`` and beyond ``after`` in the page's direction, as
    (low, high) bounds (``None``: unbounded); ``None`` when no key can qualify."""
    if after == "":
        # Every sort key is above "" (DynamoDB keys are never empty, nor may a key condition name "").
        return None if descending else _sk_bounds(prefix, None, descending)
    end = prefix_end(prefix) if prefix else None
    low = _Bound(prefix, True) if prefix else None
    high = _Bound(end, False) if end is not None else None
    if after is not None:
        if descending and (high is None or after <= high.key):
            high = _Bound(after, False)
        elif not descending and (low is None or after >= low.key):
            low = _Bound(after, False)
    if low and high and (low.key > high.key or (low.key == high.key and not (low.inclusive and high.inclusive))):
        return None
    return low, high


def _number_text(text: str, serializer: TypeSerializer) -> dict[str, Any] | None:
    """The DynamoDB number that this adapter reads back as ``text`` (``str(value) == text``), if any.

    That is an integer written as Python writes it (``"3"``, ``"-12"``, not ``"03"`` or ``"3.0"``) or a
    non-integral float written as its shortest ``repr`` (``"0.5"``, ``"1e-07"``): an integral float is
    read back as an ``int``, so ``"2.0"`` matches no number, as ``str(2) != "2.0"``.
    """
    value: int | Decimal
    try:
        value = int(text)
        canonical = str(value) == text
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        canonical = math.isfinite(number) and not number.is_integer() and repr(number) == text
        value = Decimal(text) if canonical else Decimal(0)
    if not canonical:
        return None
    try:
        return dict(serializer.serialize(value))  # refuses what DynamoDB cannot hold (over 38 digits, range)
    except ArithmeticError:  # decimal.Inexact, Overflow...: no such number is stored, so none matches
        return None


class DynamoStateStore(StateStore):
    """One DynamoDB table with string keys ``pk`` (partition) and ``sk`` (sort).

    Parameters
    ----------
    table_name:
        The table.
    client:
        A boto3 DynamoDB client (low level); built on first use when omitted.
    consistent_read:
        Strongly consistent ``get``/``query`` (the default): state decides
        idempotency, where a stale read would reprocess.

    Examples
    --------
    >>> store = DynamoStateStore("docllm-state")  # doctest: +SKIP
    >>> store.put("docs", "s3/a.md", {"status": "processed", "chunks": 3}, if_absent=True)  # doctest: +SKIP
    >>> store.get("docs", "s3/a.md")  # doctest: +SKIP
    {'status': 'processed', 'chunks': 3}
    """

    def __init__(self, table_name: str, client: DynamoDBClient | None = None, *, consistent_read: bool = True) -> None:
        self.table_name = table_name
        self._client = client
        self._consistent = consistent_read
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _to_item(self, raw: Mapping[str, Any]) -> Item:
        return {k: from_dynamo_value(self._de.deserialize(v)) for k, v in raw.items() if k not in KEY_ATTRIBUTES}

    def get(self, pk: str, sk: str) -> Item | None:
        with aws_errors(f"DynamoDB GetItem {self.table_name} {pk}/{sk}"):
            resp = self.client.get_item(
                TableName=self.table_name, Key=self._key(pk, sk), ConsistentRead=self._consistent
            )
        raw = resp.get("Item")
        return None if raw is None else self._to_item(raw)

    def _attributes(self, pk: str, sk: str, item: Item) -> dict[str, Any]:
        clash = [k for k in KEY_ATTRIBUTES if k in item]
        if clash:
            raise UnstorableItemError(f"item fields {clash} are reserved for the table keys")
        attrs = {k: self._ser.serialize(to_dynamo_value(v)) for k, v in item.items()}
        return {**self._key(pk, sk), **attrs}

    def transact(self, writes: Sequence[Write]) -> None:
        """``TransactWriteItems``: all or nothing; a failed ``if_absent`` cancels the whole
        transaction (``TransactionCanceledException``, mapped to :class:`ConflictError`)."""
        check_transact(writes)
        if not writes:
            return
        ops: list[dict[str, Any]] = []
        for w in writes:
            if isinstance(w, Put):
                put: dict[str, Any] = {"TableName": self.table_name, "Item": self._attributes(w.pk, w.sk, w.item)}
                if w.if_absent:
                    put["ConditionExpression"] = "attribute_not_exists(pk)"
                ops.append({"Put": put})
            else:
                ops.append({"Delete": {"TableName": self.table_name, "Key": self._key(w.pk, w.sk)}})
        with aws_errors(f"DynamoDB TransactWriteItems {self.table_name} ({len(ops)} writes)"):
            self.client.transact_write_items(TransactItems=ops)

    def put(self, pk: str, sk: str, item: Item, *, if_absent: bool = False) -> None:
        """Write ``item`` under ``(pk, sk)``, replacing what was there.

        Raises
        ------
        ConflictError
            With ``if_absent``, when the item exists (``ConditionalCheckFailed``).
        UnstorableItemError
            When ``item`` has a ``pk``/``sk`` field or a NaN/infinite number.
        """
        args: dict[str, Any] = {"TableName": self.table_name, "Item": self._attributes(pk, sk, item)}
        if if_absent:
            args["ConditionExpression"] = "attribute_not_exists(pk)"
        with aws_errors(f"DynamoDB PutItem {self.table_name} {pk}/{sk}"):
            self.client.put_item(**args)

    def delete(self, pk: str, sk: str) -> None:
        with aws_errors(f"DynamoDB DeleteItem {self.table_name} {pk}/{sk}"):
            self.client.delete_item(TableName=self.table_name, Key=self._key(pk, sk))

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[tuple[str, Item]]:
        """``(sk, item)`` of partition ``pk`` whose ``sk`` starts with ``sk_prefix``,
        ascending by sort key (byte order of the UTF-8 key), across pages."""
        values: dict[str, Any] = {":pk": {"S": pk}}
        condition = "pk = :pk"
        if sk_prefix:
            condition += " AND begins_with(sk, :p)"
            values[":p"] = {"S": sk_prefix}
        paginator = self.client.get_paginator("query")
        with aws_errors(f"DynamoDB Query {self.table_name} {pk}/{sk_prefix}*"):
            for page in paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ConsistentRead=self._consistent,
                ScanIndexForward=True,
            ):
                for raw in page.get("Items", []):
                    yield raw["sk"]["S"], self._to_item(raw)

    def query_page(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 50,
        where: Mapping[str, str] | None = None,
        descending: bool = False,
    ) -> list[tuple[str, Item]]:
        """One page of :meth:`query` (see the port): a ``Query`` whose sort-key condition is the page's
        range, read in the page's direction (``ScanIndexForward``), ``Limit`` about the page's size.

        DynamoDB allows one condition on the sort key, so the prefix and ``after`` become one range:
        ``begins_with`` when there is no ``after`` (or it lies outside the prefix's keys), ``sk > after`` /
        ``sk < after`` without a prefix, else ``BETWEEN`` the inclusive ends of ``[prefix, after)`` or
        ``(after, prefix_end(prefix))`` and the excluded end, at most one item each, is dropped here.

        ``where`` is a ``FilterExpression`` that matches what the port's default matches,
        ``str(item.get(field)) == value`` for items this adapter wrote: a string attribute equal to the
        value; a number whose text it is (:func:`_number_text`: ``"3"`` matches 3, ``"0.5"`` 0.5); a
        boolean for ``"True"``/``"False"``; a null or missing attribute for ``"None"``. Lists and maps
        match nothing. (SQLite compares the JSON value's SQL text instead: strings and integers match
        alike on all stores, booleans, nulls and floats do not: filter on strings.)

        DynamoDB applies ``Limit`` before the filter, so a filtered page reads on, from each response's
        ``LastEvaluatedKey``, until ``limit`` rows match or the range ends, but evaluates at most
        :data:`QUERY_PAGE_MAX_EVALUATED` items in :data:`QUERY_PAGE_MAX_REQUESTS` requests per call.
        At the cap it returns the rows found so far, possibly fewer than ``limit`` (none, even) although
        the range goes on: the result's ``resume_after`` (:class:`QueryPage`) then names the last key
        evaluated, the ``after`` of the page that continues the scan. A caller that reads "fewer than
        asked" as "no next page" must check it. An unfiltered page is never cut short.
        """
        page = QueryPage()
        limit = int(limit)
        bounds = _sk_bounds(sk_prefix, after, descending)
        if limit <= 0 or bounds is None:
            return page
        values: dict[str, Any] = {":pk": {"S": pk}}
        names: dict[str, str] = {}
        low, high = bounds
        skip: set[str] = set()
        condition = "pk = :pk"
        if (
            low
            and high
            and low.inclusive
            and not high.inclusive
            and low.key == sk_prefix
            and high.key == prefix_end(sk_prefix)
        ):
            condition += " AND begins_with(sk, :lo)"
            values[":lo"] = {"S": low.key}
        elif low and high:
            condition += " AND sk BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = {"S": low.key}, {"S": high.key}
            skip = {b.key for b in (low, high) if not b.inclusive}
        elif low:
            condition += f" AND sk {'>=' if low.inclusive else '>'} :lo"
            values[":lo"] = {"S": low.key}
        elif high:
            condition += f" AND sk {'<=' if high.inclusive else '<'} :hi"
            values[":hi"] = {"S": high.key}
        clauses: list[str] = []
        for i, (field, wanted) in enumerate((where or {}).items()):
            if not field or field in KEY_ATTRIBUTES:
                # No item has such an attribute (the port's items cannot): it reads as None.
                if wanted != "None":
                    return page
                continue
            ref = f"#w{i}"
            names[ref] = field
            options = [f"{ref} = :w{i}s"]
            values[f":w{i}s"] = {"S": wanted}
            number = _number_text(wanted, self._ser)
            if number is not None:
                # Typed, though DynamoDB never finds a number equal to a boolean: emulators (moto) do.
                options.append(f"(attribute_type({ref}, :tN) AND {ref} = :w{i}n)")
                values[f":w{i}n"], values[":tN"] = number, {"S": "N"}
            if wanted in ("True", "False"):
                options.append(f"(attribute_type({ref}, :tBOOL) AND {ref} = :w{i}b)")
                values[f":w{i}b"], values[":tBOOL"] = {"BOOL": wanted == "True"}, {"S": "BOOL"}
            if wanted == "None":
                options += [f"attribute_not_exists({ref})", f"attribute_type({ref}, :tNULL)"]
                values[":tNULL"] = {"S": "NULL"}
            clauses.append("(" + " OR ".join(options) + ")")
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": self._consistent,
            "ScanIndexForward": not descending,
        }
        if clauses:
            args["FilterExpression"] = " AND ".join(clauses)
            args["ExpressionAttributeNames"] = names
        evaluated = requests = 0
        while True:
            wanted_rows = limit - len(page) + len(skip)
            if clauses:
                args["Limit"] = min(max(wanted_rows, QUERY_PAGE_FILTERED_BATCH), QUERY_PAGE_MAX_EVALUATED - evaluated)
            else:
                args["Limit"] = wanted_rows
            with aws_errors(f"DynamoDB Query {self.table_name} {pk}/{sk_prefix}* page after {after!r}"):
                resp = self.client.query(**args)
            requests += 1
            items = resp.get("Items", [])
            evaluated += resp.get("ScannedCount", len(items))
            for raw in items:
                sk = raw["sk"]["S"]
                if sk in skip:
                    continue
                page.append((sk, self._to_item(raw)))
                if len(page) >= limit:
                    return page
            last = resp.get("LastEvaluatedKey")
            if last is None:
                return page
            if clauses and (evaluated >= QUERY_PAGE_MAX_EVALUATED or requests >= QUERY_PAGE_MAX_REQUESTS):
                page.resume_after = last["sk"]["S"]
                return page
            args["ExclusiveStartKey"] = last

    def count_by(self, pk: str, fields: Sequence[str]) -> dict[tuple[str, ...], int]:
        """As the port's default (``str`` of each field's value, ``"None"`` when missing), from a ``Query``
        that projects the fields (and ``sk``, so that an item with none of them still comes back).

        DynamoDB has no ``GROUP BY``: this reads, and is billed for, every item of the partition (the
        projection only trims what travels); a counter item is the answer if that ever costs too much.
        """
        names = {f"#c{i}": f for i, f in enumerate(fields) if f and f not in KEY_ATTRIBUTES}
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": ", ".join(["sk", *names]),
            "ConsistentRead": self._consistent,
        }
        if names:
            args["ExpressionAttributeNames"] = names
        counts: dict[tuple[str, ...], int] = {}
        paginator = self.client.get_paginator("query")
        with aws_errors(f"DynamoDB Query {self.table_name} {pk} (count)"):
            for resp in paginator.paginate(**args):
                for raw in resp.get("Items", []):
                    key = tuple(
                        str(from_dynamo_value(self._de.deserialize(raw[f])))
                        if f in raw and f not in KEY_ATTRIBUTES
                        else "None"
                        for f in fields
                    )
                    counts[key] = counts.get(key, 0) + 1
        return counts

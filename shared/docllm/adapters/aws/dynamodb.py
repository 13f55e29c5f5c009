"""DynamoDB adapter of :class:`docllm.ports.state.StateStore`.

Items are stored as top-level attributes beside the ``pk``/``sk`` keys (so a
TTL attribute or a GSI key can be an item field). Values go through boto3's
:class:`~boto3.dynamodb.types.TypeSerializer`, which refuses ``float``:
floats are converted to :class:`~decimal.Decimal` from their shortest
``repr`` (``0.1`` is stored as ``0.1``, not as the binary expansion), and
numbers read back become ``int`` when integral, ``float`` otherwise. So
``1.0`` comes back as ``1`` (equal in Python and JSON) and NaN/infinity are
refused, since DynamoDB has no such numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
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

"""Shared moto set-up: the state table as the SAM template declares it."""

from __future__ import annotations

from typing import Any


def create_state_table(client: Any, name: str, *, stream: bool = False) -> None:
    """A ``pk``/``sk`` string-keyed, on-demand table (with a NEW_IMAGE stream, as the template's)."""
    extra: dict[str, Any] = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}} if stream else {}
    )
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )

"""The EventBridge envelope, shared by the events we emit and those AWS emits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class BusEvent(BaseModel):
    """An event as EventBridge delivers it to a target (``detail-type`` spelled as AWS does)."""

    model_config = ConfigDict(populate_by_name=True)

    version: str = "0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str = "000000000000"
    time: datetime = Field(default_factory=_now)
    region: str = "local"
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object EventBridge would deliver (``time`` as ``...Z``)."""
        data = self.model_dump(by_alias=True, mode="json")
        data["time"] = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return data

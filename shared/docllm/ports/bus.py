"""Event bus port: EventBridge on AWS, the local router here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from docllm.events.envelope import BusEvent


class EventBus(ABC):
    @abstractmethod
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Put events on the bus; raise :class:`TransientError` if any entry failed."""

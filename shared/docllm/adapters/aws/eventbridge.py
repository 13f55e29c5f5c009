"""EventBridge adapter of :class:`docllm.ports.bus.EventBus`."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import aws_errors
from docllm.events.envelope import BusEvent
from docllm.exceptions import PermanentError, TransientError
from docllm.ports.bus import EventBus

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

MAX_ENTRIES_PER_REQUEST = 10
MAX_REQUEST_BYTES = 256 * 1024
# EventBridge counts a present Time field as 14 bytes (see "Calculating PutEvents event entry size").
_TIME_BYTES = 14

# Entry-level error codes that no retry can fix (the entry itself is refused).
PERMANENT_ENTRY_CODES = frozenset(
    {
        "MalformedDetail",
        "InvalidArgument",
        "AccessDeniedException",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
        "ValidationException",
    }
)


@dataclass(frozen=True)
class FailedEntry:
    """One event EventBridge did not accept."""

    event_id: str
    detail_type: str
    code: str
    message: str


class PublishError(TransientError):
    """Some events were still refused after the retries; they may succeed later."""

    def __init__(self, message: str, failures: Sequence[FailedEntry]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class EventRejectedError(PermanentError):
    """Some events were refused for a reason no retry fixes (too large, malformed, denied)."""

    def __init__(self, message: str, failures: Sequence[FailedEntry]) -> None:
        super().__init__(message)
        self.failures = list(failures)


def entry_size(entry: dict[str, Any]) -> int:
    """Size of one PutEvents entry as EventBridge counts it against the 256 KiB limit.

    Examples
    --------
    >>> entry_size({"Source": "a", "DetailType": "b", "Detail": "{}", "Resources": ["r"]})
    5
    """
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    size += len(entry["Source"].encode())
    size += len(entry["DetailType"].encode())
    size += len(entry.get("Detail", "").encode())
    size += sum(len(r.encode()) for r in entry.get("Resources", []))
    return size


def batch_entries(
    entries: Sequence[dict[str, Any]],
    *,
    max_entries: int = MAX_ENTRIES_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[int]]:
    """Group entry indexes into requests of at most ``max_entries`` and ``max_bytes``.

    Order is kept so events of one producer arrive in the order published
    (EventBridge itself does not promise ordering, but we do not add disorder).

    Examples
    --------
    >>> e = {"Source": "s", "DetailType": "d", "Detail": "x" * 10}
    >>> batch_entries([e] * 3, max_bytes=25)
    [[0, 1], [2]]
    """
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for i, entry in enumerate(entries):
        size = entry_size(entry)
        if current and (len(current) >= max_entries or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(i)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


class EventBridgeBus(EventBus):
    """Publish :class:`BusEvent` objects to one EventBridge bus.

    Parameters
    ----------
    bus_name:
        Name or ARN of the event bus.
    client:
        A boto3 ``events`` client; built on first use when omitted.
    max_attempts:
        How many times an entry is sent in all before giving up (the SDK's own
        retries of a whole failed request come on top).
    base_delay_s, max_delay_s:
        Full-jitter exponential backoff between attempts.
    sleep:
        Injected for tests.

    Examples
    --------
    >>> bus = EventBridgeBus("docllm")  # doctest: +SKIP
    >>> event = BusEvent(source="docllm.ingest", detail_type="Document Processed", detail={})
    >>> bus.publish([event])  # doctest: +SKIP
    """

    def __init__(
        self,
        bus_name: str,
        client: EventBridgeClient | None = None,
        *,
        max_attempts: int = 4,
        base_delay_s: float = 0.1,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.bus_name = bus_name
        self._client = client
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep

    @property
    def client(self) -> EventBridgeClient:
        if self._client is None:
            self._client = boto3.client("events")
        return self._client

    def to_entry(self, event: BusEvent) -> dict[str, Any]:
        """The PutEvents entry of one event (``id``, ``account``, ``region`` are set by AWS)."""
        wire = event.to_wire()
        return {
            "Source": event.source,
            "DetailType": event.detail_type,
            "Detail": json.dumps(wire["detail"], separators=(",", ":"), ensure_ascii=False),
            "Resources": list(event.resources),
            "Time": event.time,
            "EventBusName": self.bus_name,
        }

    def publish(self, events: Sequence[BusEvent]) -> None:
        """Put ``events`` on the bus, in batches within the PutEvents limits.

        Entries EventBridge refuses are sent again (only those) with backoff, up
        to ``max_attempts`` sends in all.

        Raises
        ------
        EventRejectedError
            Before anything is sent, when an event alone exceeds 256 KiB; or
            at the end, when an entry was refused with a code no retry fixes.
        PublishError
            Entries still refused after the last attempt (throttling,
            internal failure); carries ``failures``.
        """
        entries = [self.to_entry(e) for e in events]
        too_big = [
            FailedEntry(events[i].id, events[i].detail_type, "EntryTooLarge", f"{entry_size(e)} bytes")
            for i, e in enumerate(entries)
            if entry_size(e) > MAX_REQUEST_BYTES
        ]
        if too_big:
            # Checked before sending anything, so a caller's retry does not duplicate the rest.
            raise EventRejectedError(
                f"{len(too_big)} event(s) exceed the {MAX_REQUEST_BYTES}-byte PutEvents limit: "
                + ", ".join(f.event_id for f in too_big),
                too_big,
            )

        pending = list(range(len(entries)))
        rejected: list[FailedEntry] = []
        failures: list[FailedEntry] = []
        for attempt in range(self._max_attempts):
            if attempt:
                cap = min(self._max_delay_s, self._base_delay_s * 2 ** (attempt - 1))
                self._sleep(random.uniform(0, cap))
            failures = []
            retry: list[int] = []
            for batch in batch_entries([entries[i] for i in pending]):
                indexes = [pending[j] for j in batch]
                with aws_errors(f"EventBridge PutEvents to {self.bus_name}"):
                    resp = self.client.put_events(Entries=[entries[i] for i in indexes])
                if not resp.get("FailedEntryCount"):
                    continue
                # Result entries are in request order; failed ones carry ErrorCode.
                for i, result in zip(indexes, resp["Entries"], strict=True):
                    code = result.get("ErrorCode")
                    if not code:
                        continue
                    failed = FailedEntry(events[i].id, events[i].detail_type, code, result.get("ErrorMessage", ""))
                    if code in PERMANENT_ENTRY_CODES:
                        rejected.append(failed)
                    else:
                        failures.append(failed)
                        retry.append(i)
            if not retry:
                break
            pending = retry

        def describe(items: list[FailedEntry]) -> str:
            return "; ".join(f"{f.event_id} ({f.detail_type}): {f.code}" for f in items)

        if rejected:
            raise EventRejectedError(f"EventBridge refused {len(rejected)} event(s): {describe(rejected)}", rejected)
        if failures:
            raise PublishError(
                f"EventBridge refused {len(failures)} event(s) after {self._max_attempts} attempts: "
                f"{describe(failures)}",
                failures,
            )

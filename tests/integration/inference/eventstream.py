"""AWS event-stream responses built byte for byte, so botocore's own parser reads them.

The Stubber validates a streaming response as one event (a dict), which cannot stand for a stream of
several; these tests instead answer the HTTP request (``before-send``) with real event-stream
frames, so the request is serialised and validated by botocore and the events are decoded by it,
as in production.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, its CRC, string headers, payload, message CRC."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(event_type: str, payload: bytes, content_type: str = "application/octet-stream") -> bytes:
    return frame({":message-type": "event", ":event-type": event_type, ":content-type": content_type}, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    return frame(
        {":message-type": "exception", ":exception-type": exception_type, ":content-type": "application/json"}, payload
    )


class _Raw:
    """What botocore reads an event stream from (urllib3's response, in production)."""

    def __init__(self, data: bytes, read_size: int) -> None:
        self._data = data
        self._size = read_size

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        # Reads cut across frames too, as the network does.
        for i in range(0, len(self._data), self._size):
            yield self._data[i : i + self._size]

    def close(self) -> None:
        pass


class StreamResponder:
    """A ``before-send`` handler answering with ``frames``; it keeps the requests it saw."""

    def __init__(self, frames: list[bytes], *, read_size: int = 7) -> None:
        self.data = b"".join(frames)
        self.read_size = read_size
        self.requests: list[AWSPreparedRequest] = []

    def __call__(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        self.requests.append(request)
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/vnd.amazon.eventstream"
        headers["x-amzn-RequestId"] = "test"
        return AWSResponse(request.url, 200, headers, _Raw(self.data, self.read_size))

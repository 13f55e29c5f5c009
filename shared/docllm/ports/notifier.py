"""Notifier port: tell people that something happened to what serves (SNS on AWS, a log file locally).

The rollback stage notifies when it rolls a version back, and pages when it cannot (nothing to roll
back to, or the rollback did not take effect). Delivery is at least once: a notification sent just
before a crash is sent again on the retry, so a notification names its incident, and readers may
see the same one twice.

>>> notifier.notify(Notification(subject="rolled back v2", message="...", severity="warning"))  # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, field_validator

Severity = Literal["info", "warning", "page"]
#: SNS subjects are at most 100 characters, ASCII printable, no line break.
MAX_SUBJECT: Final = 100
#: SNS messages are at most 256 KB; a notification is a summary, far under that.
MAX_MESSAGE: Final = 64 * 1024


def one_line_subject(text: str) -> str:
    """``text`` as an SNS subject: one line of printable ASCII, at most 100 characters.

    >>> one_line_subject("[page] docllm: nothing to roll back to\\n(v2 keeps serving) — see docllm incidents")[:60]
    '[page] docllm: nothing to roll back to (v2 keeps serving) - '
    """
    ascii_text = text.replace("—", "-").replace("–", "-").encode("ascii", "replace").decode("ascii")
    cleaned = " ".join("".join(c if 32 <= ord(c) < 127 else " " for c in ascii_text).split())
    if len(cleaned) > MAX_SUBJECT:
        cleaned = cleaned[: MAX_SUBJECT - 1].rstrip() + "~"
    return cleaned or "docllm"


class Notification(BaseModel):
    """One message for people."""

    subject: str = Field(min_length=1, description="one line; cut to an SNS subject when sent")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE)
    severity: Severity = "warning"
    attributes: dict[str, str] = Field(
        default_factory=dict, description="e.g. incident_id, target, model_version: filterable on SNS"
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return one_line_subject(value)


class Notifier(ABC):
    """Sends notifications."""

    @abstractmethod
    def notify(self, notification: Notification) -> dict[str, Any]:
        """Send ``notification``; return what the channel answered (an SNS message id, the log line).

        Raises :class:`~docllm.exceptions.TransientError` when sending may work later, a
        :class:`~docllm.exceptions.PermanentError` when it cannot (no topic configured, access denied)."""

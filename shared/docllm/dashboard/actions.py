"""What a person changes from the dashboard: the same platform requests the CLI makes.

Each action is one idempotent request (an event on the bus, or a checked upload) committed with a
record of who asked and why (``pk="dashboard-actions"``) through the outbox, so the record and the
request stand or fall together. The gate records the reviewer and the reason of a review itself; the
deployer's "Deployment Requested" has no such fields, so the record is what says why a rollback was asked.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from docllm.bootstrap import Platform
from docllm.dashboard.queries import ACTIONS_PK, BENCHMARKS_PREFIX, endpoints, model
from docllm.events.contracts import DeploymentRequested, EventDetail, ModelReviewSubmitted
from docllm.ports.state import Put

MAX_REASON = 2000
#: A benchmark file name as it will sit under ``benchmarks/``.
BENCHMARK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.(ya?ml|jsonl|json)$")
MAX_BENCHMARK_BYTES = 512 * 1024


class ActionRefused(ValueError):
    """The request cannot be made as given; the message says why, for the person who asked."""


def who() -> str:
    """The local platform's one identity: the OS user who owns it (as ``docllm approve`` records)."""
    return f"local:{getpass.getuser()} (dashboard)"


def _record(action: str, subject: str, why: str, request_id: str, **extra: Any) -> Put:
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    item = {"at": at, "who": who(), "action": action, "subject": subject, "why": why, "request_id": request_id, **extra}
    return Put(ACTIONS_PK, f"{at}#{request_id}", item)


def _commit(p: Platform, record: Put, event: EventDetail) -> None:
    from docllm.service_layer.outbox import commit

    commit(p, [record], [event])


def _reason(raw: str | None) -> str:
    text = (raw or "").strip()
    if not text:
        raise ActionRefused("say why: the reason is recorded with your name")
    if len(text) > MAX_REASON:
        raise ActionRefused(f"the reason is too long: at most {MAX_REASON} characters")
    return text


def review(p: Platform, version: str, decision: str, reason: str | None) -> str:
    """Approve or reject ``version`` (the gate applies it, as for ``docllm approve|reject``)."""
    if decision not in ("approve", "reject"):
        raise ActionRefused("the decision must be approve or reject")
    why = _reason(reason)
    if model(p, version) is None:
        raise ActionRefused(f"no model {version!r}")
    event = ModelReviewSubmitted(model_version=version, decision=decision, reviewer=who(), reason=why)
    _commit(p, _record(decision, version, why, event.request_id), event)
    return event.request_id


def rollback(p: Platform, target: str, reason: str | None) -> str:
    """Deploy ``target``'s last known good version again (what an alarm's rollback deploys)."""
    from docllm.service_layer.rollback import last_known_good

    why = _reason(reason)
    serving = next((e for e in endpoints(p) if e["target"] == target), None)
    if serving is None or not serving.get("model_version"):
        raise ActionRefused(f"nothing is deployed to {target!r}")
    good = last_known_good(p, target, str(serving["model_version"]))
    if good is None:
        raise ActionRefused(f"{target} has no earlier approved version to roll back to")
    event = DeploymentRequested(model_version=good, target=target)
    _commit(
        p,
        _record("rollback", target, why, event.request_id, from_version=serving["model_version"], to_version=good),
        event,
    )
    return good


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a ``multipart/form-data`` body: name -> (file name or None, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ActionRefused("upload the file with the form (multipart/form-data)")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def upload_benchmark(p: Platform, filename: str | None, body: bytes) -> str:
    """Check one benchmark file against those already uploaded, then store it under ``benchmarks/``."""
    from docllm.evaluation.benchmarks import BenchmarkError, validate_benchmark_file

    name = (filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if not name:
        raise ActionRefused("choose a benchmark file to upload")
    if not BENCHMARK_NAME.match(name):
        raise ActionRefused("a benchmark file is a .yaml, .yml, .jsonl or .json file named with letters, digits, . _ -")
    if not body.strip():
        raise ActionRefused(f"{name} is empty")
    if len(body) > MAX_BENCHMARK_BYTES:
        raise ActionRefused(f"{name} is too large: at most {MAX_BENCHMARK_BYTES // 1024} KiB")
    bucket = p.settings.raw_bucket
    siblings = {
        info.key[len(BENCHMARKS_PREFIX) :]: p.objects.get(bucket, info.key)
        for info in p.objects.list(bucket, BENCHMARKS_PREFIX)
        if info.key[len(BENCHMARKS_PREFIX) :] != name
    }
    try:
        validate_benchmark_file(name, body, siblings)
    except BenchmarkError as e:
        raise ActionRefused(str(e) if name in str(e) else f"{name}: {e}") from None
    p.objects.put(bucket, BENCHMARKS_PREFIX + name, body)
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    p.state.put(
        ACTIONS_PK,
        f"{at}#upload-{name}",
        {"at": at, "who": who(), "action": "upload benchmark", "subject": name, "why": ""},
    )
    return name

"""``ask``, ``deploy``, ``endpoints``: the serving side of the platform."""

from __future__ import annotations

import json
from argparse import Namespace
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    Col,
    emit_json,
    line,
    lit,
    out,
    print_table,
    running_platform,
)
from docllm.events.contracts import DeploymentRequested, to_bus


def cmd_deploy(args: Namespace) -> int:
    """Publish "Deployment Requested"; wait for "Model Deployed" (a canary: for "Canary Started")."""
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.service_layer.jobs import MODELS_PK

    canary = getattr(args, "canary", None)
    bake = getattr(args, "bake", None)
    if (canary is not None or bake is not None) and args.target != "local":
        raise CliError(
            "--canary/--bake split traffic on the local target; on SageMaker the endpoint's blue/green "
            "deployment does it",
            EXIT_USAGE,
        )
    p, _ = running_platform(args)
    if p.state.get(MODELS_PK, args.version) is None:
        raise CliError(f"no model {args.version!r}: see docllm models", EXIT_NOT_FOUND)
    seq = _last_seq(p)
    request = DeploymentRequested(model_version=args.version, target=args.target, canary_percent=canary, bake_s=bake)
    p.bus.publish([to_bus(request)])
    wanted = {"Model Deployed", "Canary Started"}
    body = _wait_for(p, seq, request.request_id, wanted, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body.get("detail-type") not in wanted:
        raise CliError(_failure(body), EXIT_FAILED)
    if args.json:
        emit_json(body)
        return 0
    d = body["detail"]
    if body["detail-type"] == "Canary Started":
        out.print(
            line(
                "canary ",
                lit(d["model_version"], "bold"),
                f" takes {d['canary_percent']:g}% of ",
                lit(d["target"]),
                " beside ",
                lit(d["stable_version"]),
                " until ",
                lit(d["bake_until"]),
                " (promoted then if its alarms stay quiet; docllm endpoints shows the split)",
            )
        )
        return 0
    out.print(
        line(
            "deployed ",
            lit(d["model_version"], "bold"),
            " to ",
            lit(d["target"]),
            " at ",
            lit(d["endpoint"]),
            " (replaced ",
            lit(d.get("previous_version") or "nothing"),
            ")",
        )
    )
    return 0


def traffic_split(endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """Who takes an endpoint's traffic: the stable version, and a canary with its share, one row each.

    Examples
    --------
    >>> [(r["model_version"], r["role"], r["percent"]) for r in traffic_split(
    ...     {"target": "local", "model_version": "v1", "canary": {"model_version": "v2", "weight": 0.1}})]
    [('v1', 'stable', 90.0), ('v2', 'canary', 10.0)]
    """
    canary = endpoint.get("canary") or None
    share = round(100.0 * float(canary.get("weight") or 0.0), 6) if canary else 0.0
    rows = []
    if endpoint.get("model_version"):
        rows.append(
            {
                "target": endpoint.get("target", ""),
                "model_version": endpoint["model_version"],
                "role": "stable",
                "percent": 100.0 - share,
                "endpoint": endpoint.get("endpoint") or endpoint.get("url", ""),
                "since": endpoint.get("finished_at") or endpoint.get("deployed_at", ""),
                "bake_until": None,
                "previous_version": endpoint.get("previous_version"),
            }
        )
    if canary:
        rows.append(
            {
                "target": endpoint.get("target", ""),
                "model_version": canary.get("model_version", ""),
                "role": "canary",
                "percent": share,
                "endpoint": canary.get("url", ""),
                "since": canary.get("started_at", ""),
                "bake_until": canary.get("bake_until"),
                "previous_version": None,
            }
        )
    return rows


def cmd_endpoints(args: Namespace) -> int:
    from docllm.service_layer.deploy import ENDPOINTS_PK, deployments

    p, _ = running_platform(args)
    endpoints = [item for _, item in p.state.query(ENDPOINTS_PK)]
    history = deployments(p)
    split = [row for e in endpoints for row in traffic_split(e)]
    if args.json:
        emit_json({"endpoints": endpoints, "traffic": split, "deployments": history})
        return 0
    print_table(
        [
            "target",
            Col("model", copy=True),
            "role",
            Col("traffic", justify="right"),
            Col("endpoint", copy=True),
            "since",
            "bake until",
            Col("replaced", copy=True),
        ],
        [
            (
                r["target"],
                r["model_version"],
                r["role"],
                f"{r['percent']:g}%",
                r["endpoint"],
                r["since"],
                r["bake_until"] or "",
                r["previous_version"] or "",
            )
            for r in split
        ],
    )
    return 0


def cmd_ask(args: Namespace) -> int:
    """Ask through the running platform's API, as any client would (auth, limits, validation).

    ``--stream`` shows the model's text as it comes, then the checked answer, which may differ from
    what was shown (it may abstain: docs/answers.md, Streaming); ``--json`` prints only the answer."""
    from docllm.answers.models import Answer
    from docllm.cli.common import api_post

    p, info = running_platform(args)
    body: dict[str, Any] = {"question": args.question, "k": args.k}
    if args.service:
        body["service"] = args.service
    if getattr(args, "stream", False):
        answer = _ask_streamed(info, p.data_dir, body, show=not args.json)
    else:
        status, answer = api_post(info, p.data_dir, "/v1/ask", body)
        if status != 200:
            _ask_failed(status, answer)
    if args.json:
        emit_json(answer)
        return 0
    if answer.get("abstained"):
        out.print(line(lit(answer["answer"], "bold"), "  ", lit(f"({answer.get('reason')})", "dim")))
        pages = Answer.model_validate(answer).pages_to_read()
        if pages:
            out.print(lit("Pages that may cover it (search results, not citations):", "dim"))
            for d in pages:
                out.print(line("  ", lit(d.title, "bold"), "  ", lit(d.doc_key, "dim")))
    else:
        out.print(lit(answer["answer"], multiline=True))
    for i, c in enumerate(answer.get("citations", []), 1):
        out.print(line(f"[{i}] ", lit(c["doc_key"], "bold"), " ", lit(" › ".join(c.get("heading_path") or []), "dim")))
        if c.get("quote"):
            out.print(line("    “", lit(c["quote"][:200]), "”"))
    if answer.get("unsupported"):
        out.print(line(lit("unsupported: ", "yellow"), lit(", ".join(answer["unsupported"]))))
    out.print(line(lit(f"{answer.get('model_version')} · {answer.get('latency_ms')} ms", "dim")))
    return 0


def _ask_failed(status: int, answer: Any) -> NoReturn:
    message = answer.get("message") if isinstance(answer, dict) else str(answer)
    raise CliError(f"ask failed ({status}): {message}", EXIT_NOT_FOUND if status == 404 else EXIT_FAILED)


def _ask_streamed(info: dict[str, Any], data: Path, body: dict[str, Any], *, show: bool) -> dict[str, Any]:
    """``POST /v1/ask`` with ``stream: true``: show each delta as it arrives (``show``), return the
    final answer. The draft is what the model wrote before the checks; on a terminal it is replaced
    by the answer, elsewhere the answer follows it."""
    import urllib.error
    import urllib.request

    from docllm.exceptions import PlatformNotRunningError
    from docllm.runtime.local import API_KEY_FILE

    request = urllib.request.Request(
        f"{info['api_url']}/v1/ask",
        data=json.dumps({**body, "stream": True}).encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    if info.get("auth"):
        key = (data / API_KEY_FILE).read_text(encoding="utf-8").strip()
        request.add_header("Authorization", "Bearer " + key)
    try:
        response = urllib.request.urlopen(request, timeout=120)
    except urllib.error.HTTPError as e:
        _ask_failed(e.code, _json_or_text(e.read()))
    except urllib.error.URLError as e:
        raise PlatformNotRunningError(
            f"the local API at {info['api_url']} does not answer ({e.reason}); is docllm up running?"
        ) from None
    with response, _Draft(show) as draft:
        if not str(response.headers.get("Content-Type", "")).startswith("text/event-stream"):
            return dict(_json_or_text(response.read()))  # an API that answered whole
        for event, payload in sse_events(iter(response.readline, b"")):
            if event == "delta":
                draft.add(str(payload.get("text", "")))
            elif event == "answer":
                return payload
            elif event == "error":
                _ask_failed(int(payload.get("status") or 500), payload)
    raise CliError("the answer stream ended without an answer", EXIT_FAILED)


def sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` of each server-sent event in ``lines`` (data as JSON).

    Examples
    --------
    >>> list(sse_events([b"event: delta\\n", b'data: {"text":"Hi"}\\n', b"\\n"]))
    [('delta', {'text': 'Hi'})]
    """
    event = "message"
    data: list[str] = []
    for raw in lines:
        text = raw.decode("utf-8").rstrip("\r\n")
        if not text:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif text.startswith("event:"):
            event = text[6:].strip()
        elif text.startswith("data:"):
            data.append(text[5:].removeprefix(" "))
    if data:
        yield event, json.loads("\n".join(data))


class _Draft:
    """The streamed text while it comes: live (and then cleared) on a terminal, printed as it arrives
    elsewhere."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.text = ""
        self._live: Any = None

    def __enter__(self) -> _Draft:
        if self.show and out.is_terminal:
            from rich.live import Live

            self._live = Live(lit(""), console=out, transient=True, auto_refresh=False)
            self._live.start()
        return self

    def add(self, delta: str) -> None:
        self.text += delta
        if not self.show:
            return
        if self._live is not None:
            self._live.update(lit(self.text, "dim", multiline=True), refresh=True)
            return
        out.print(lit(delta, "dim", multiline=True), end="")
        out.file.flush()

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
        elif self.show and self.text:
            out.print()
            out.print()  # a blank line between the draft and the answer


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}


__all__ = ["cmd_ask", "cmd_deploy", "cmd_endpoints", "json"]

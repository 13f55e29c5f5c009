"""The dashboard's pages: each reads through :mod:`docllm.dashboard.queries` and returns HTML.

A view takes the platform, the request's parameters (already checked by
:mod:`docllm.api.dashboard_routes`) and a :class:`View` (the CSRF token for its forms and a notice to
show), and returns the page's body; :func:`~docllm.dashboard.html.layout` wraps it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from docllm.bootstrap import Platform
from docllm.dashboard import queries as q
from docllm.dashboard.html import (
    Html,
    badge,
    bar_chart,
    form,
    h,
    join,
    message,
    pager,
    table,
    url,
)
from docllm.dashboard.html import (
    field as input_field,
)

#: Metrics shown against the champion, in this order (whichever a version has).
KEY_METRICS = ("final_val_loss", "perplexity", "qa_token_f1", "qa_exact_match", "hallucination_rate", "citation_rate")
#: What every evaluation runs (docs/evaluation.md), whatever was uploaded.
STANDARD_BENCHMARKS = (
    ("held-out perplexity", "perplexity and loss on the dataset's test split"),
    ("documentation Q&A", "token F1 and exact match of answers to questions drawn from the documents"),
    ("hallucination", "share of answers stating facts no retrieved passage supports"),
)
DOC_STATUSES = ("processing", "processed", "duplicate", "quarantined", "removed")


class BadInput(ValueError):
    """A parameter a person gave that the page cannot use; the message says what is wrong."""


@dataclass
class View:
    csrf: str | None
    """The token for state-changing forms (None: this deployment takes no actions from the dashboard)."""
    notices: list[Html] = field(default_factory=list)


def _actions_note(view: View) -> Html:
    if view.csrf is not None:
        return Html("")
    return message(
        "Actions are off here: on AWS, approve or reject in the SageMaker Model Registry (it records your IAM "
        "identity) and roll back with docllm deploy.",
    )


# -- overview -------------------------------------------------------------------------------------


def overview(p: Platform, params: dict[str, str], view: View) -> Html:
    counts = q.document_counts(p)
    by_status: dict[str, int] = defaultdict(int)
    by_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (status, service), n in counts.items():
        by_status[status] += n
        by_service[service][status] += n
    statuses = [s for s in DOC_STATUSES if by_status.get(s)] + sorted(set(by_status) - set(DOC_STATUSES))
    services = sorted(by_service, key=lambda s: -sum(by_service[s].values()))
    docs = Html(
        bar_chart("documents by status", [(s, float(by_status[s])) for s in statuses])
        + table(
            ["service", *statuses, "total"],
            (
                [
                    h("a", svc, href=url("/dashboard/documents", q=f"{svc}/")),
                    *(by_service[svc].get(s, 0) for s in statuses),
                    sum(by_service[svc].values()),
                ]
                for svc in services[:30]
            ),
            caption=f"documents by service ({sum(by_status.values())} in all)",
            empty="no documents yet: docllm ingest DIR",
        )
    )
    qs = q.queues(p)
    busy = [x for x in qs if x["visible"] or x["in_flight"] or x["delayed"] or x["dead"]]
    queue_rows = [
        [x["queue"], x["visible"], x["in_flight"], x["delayed"], h("strong", x["dead"]) if x["dead"] else 0]
        for x in (busy or qs)
    ]
    dlq_rows = [
        [x["queue"], d["message_id"][:12], d["receive_count"], d["reason"][:160]]
        for x in qs
        if x["dead"]
        for d in q.dead_letters(p, x["queue"], limit=3)
    ]
    queues_html = Html(
        table(
            ["queue", "waiting", "in flight", "delayed", "dead letters"],
            queue_rows,
            caption="queues with work or dead letters" if busy else "queues (all idle)",
            empty="queue depths are in CloudWatch on AWS",
        )
        + (table(["queue", "message", "receives", "reason"], dlq_rows, caption="dead letters") if dlq_rows else "")
    )
    pipes = table(
        ["family", "stale documents", "run", "last run", "model"],
        (
            [
                x.get("family"),
                (x.get("staleness") or {}).get("count", 0),
                badge("running") if x.get("current_run") else "idle",
                badge((x.get("last_run") or {}).get("state", "")) if x.get("last_run") else "never",
                (x.get("last_run") or {}).get("model_version") or "",
            ]
            for x in q.pipelines(p)
        ),
        caption="continuous-training pipelines",
        empty="no family has a pipeline yet",
    )
    alarm_rows = [[a["name"], badge(a["state"])] for a in q.alarms(p) if a["state"] != "OK"]
    alarms_html = table(["alarm", "state"], alarm_rows, caption="alarms not OK", empty="every alarm is OK")
    deployed = table(
        ["target", "model", "previous", "since"],
        (
            [
                e["target"],
                _model_link(e.get("model_version")),
                e.get("previous_version") or "",
                e.get("started_at") or e.get("deployed_at") or "",
            ]
            for e in q.endpoints(p)
        ),
        caption="serving now",
        empty="nothing deployed",
    )
    return Html(
        h("section", h("h2", "Documents"), docs, aria_labelledby=None)
        + h(
            "div",
            h("section", h("h2", "Queues"), queues_html),
            h("section", h("h2", "Alarms"), alarms_html),
            class_="grid",
        )
        + h(
            "div",
            h("section", h("h2", "Pipelines"), pipes),
            h("section", h("h2", "Deployments"), deployed),
            class_="grid",
        )
    )


def _model_link(version: object) -> Html:
    if not version:
        return Html("")
    return h("a", version, href=url("/dashboard/model", version=str(version)))


def _doc_link(doc_key: str) -> Html:
    return h("a", doc_key, href=url("/dashboard/document", key=doc_key))


# -- documents ------------------------------------------------------------------------------------


def documents(p: Platform, params: dict[str, str], view: View) -> Html:
    prefix, status, after = params.get("q", ""), params.get("status") or None, params.get("after")
    if status is not None and status not in DOC_STATUSES:
        raise BadInput(f"unknown status {status!r}: one of {', '.join(DOC_STATUSES)}")
    page = q.documents(p, prefix=prefix, status=status, after=after)
    options = [h("option", "any", value="")] + [h("option", s, value=s, selected=s == status) for s in DOC_STATUSES]
    search = h(
        "form",
        input_field(
            "Key starts with (a service is its first segment, e.g. quillstore/)",
            "q",
            value=prefix,
            kind="search",
            maxlength="512",
        ),
        h(
            "p",
            h("label", "Status", for_="f-status"),
            h("select", *options, id="f-status", name="status"),
            class_="field",
        ),
        h("button", "Search", type="submit"),
        action="/dashboard/documents",
        method="get",
        role="search",
    )
    rows = []
    for key, item in page.rows:
        rows.append(
            [
                _doc_link(key),
                item.get("service"),
                badge(item.get("status")),
                item.get("chunk_count", 0),
                item.get("reason") or (f"duplicate of {item['duplicate_of']}" if item.get("duplicate_of") else ""),
                item.get("updated_at", ""),
            ]
        )
    dedup = q.recent_dedup(p, limit=10)
    dedup_rows = [
        [
            _doc_link(i.get("doc_key", "")),
            i.get("action"),
            i.get("duplicate_of") or "",
            i.get("similarity"),
            i.get("detail", "")[:120],
        ]
        for _, i in dedup.rows
    ]
    return Html(
        search
        + table(
            ["document", "service", "status", "chunks", "reason", "updated"],
            rows,
            caption="documents" + (f" starting with {prefix}" if prefix else "") + (f", {status}" if status else ""),
            empty="no document matches",
        )
        + pager("/dashboard/documents", next_after=page.next_after, first=after is None, q=prefix, status=status)
        + h("h2", "Dedup log (first entries)")
        + table(
            ["document", "action", "duplicate of", "similarity", "detail"],
            dedup_rows,
            caption="dedup log",
            empty="no duplicates found",
        )
    )


def document(p: Platform, params: dict[str, str], view: View) -> Html:
    key = params.get("key", "")
    record = q.document(p, key)
    if record is None:
        raise LookupError(f"no document {key!r}")
    start = _int(params.get("start"), "start", default=0, high=10**6)
    chunks, more = q.chunks(p, key, start=start)
    facts = table(
        ["field", "value"],
        [
            ["status", badge(record.status)],
            ["service", record.service],
            ["title", record.title or ""],
            ["reason", (f"{record.reason_code}: " if record.reason_code else "") + (record.reason or "")],
            ["duplicate of", _doc_link(record.duplicate_of) if record.duplicate_of else ""],
            ["chunks", record.chunk_count],
            ["version", record.version_id],
            ["sha256", record.sha256 or ""],
            ["updated", record.updated_at],
        ],
        caption="record",
    )
    log = table(
        ["at", "action", "duplicate of", "detail"],
        ([i.get("at"), i.get("action"), i.get("duplicate_of") or "", i.get("detail", "")] for i in q.dedup_log(p, key)),
        caption="dedup log",
        empty="no dedup decisions",
    )
    items = [
        h(
            "article",
            h(
                "h3",
                f"#{c.get('position')} " + " › ".join(c.get("heading_path") or []),
                id=f"chunk-{c.get('chunk_id')}",
            ),
            h("div", c.get("text", ""), class_="passage"),
        )
        for c in chunks
    ]
    nav = []
    if start:
        nav.append(
            h("a", "previous chunks", href=url("/dashboard/document", key=key, start=max(0, start - q.CHUNK_PAGE)))
        )
    if more:
        nav.append(h("a", "next chunks →", href=url("/dashboard/document", key=key, start=start + q.CHUNK_PAGE)))
    return Html(
        h("p", h("code", key))
        + facts
        + log
        + h("h2", f"Chunks {start + 1}–{start + len(chunks)}" if chunks else "Chunks")
        + (join(items) if items else message("no chunks stored for this document"))
        + (h("nav", *nav, class_="pager", aria_label="chunk pages") if nav else "")
    )


def passage(p: Platform, params: dict[str, str], view: View) -> Html:
    """One cited chunk (what a citation on the ask page opens), found in its document's chunk file."""
    key, chunk_id = params.get("key", ""), params.get("chunk", "")
    if q.document(p, key) is None:
        raise LookupError(f"no document {key!r}")
    start = 0
    while True:
        chunks, more = q.chunks(p, key, start=start, limit=200)
        found = next((c for c in chunks if c.get("chunk_id") == chunk_id), None)
        if found is not None or not more:
            break
        start += 200
    if found is None:
        raise LookupError(f"document {key!r} has no chunk {chunk_id!r} (it may have changed since)")
    return Html(
        h("p", "From ", _doc_link(key), ": ", " › ".join(found.get("heading_path") or []))
        + h("blockquote", h("div", found.get("text", ""), class_="passage"))
        + h("p", h("a", "the whole document", href=url("/dashboard/document", key=key)))
    )


# -- models ---------------------------------------------------------------------------------------


def _metric_cells(metrics: dict[str, Any], champion: dict[str, Any] | None) -> list[object]:
    cells: list[object] = []
    for name in KEY_METRICS[:4]:
        value = metrics.get(name)
        if value is None:
            cells.append("")
            continue
        base = (champion or {}).get(name)
        delta = f" ({value - base:+.3g})" if isinstance(value, int | float) and isinstance(base, int | float) else ""
        cells.append(f"{value:.4g}{delta}" if isinstance(value, int | float) else str(value))
    return cells


def models(p: Platform, params: dict[str, str], view: View) -> Html:
    family, after = params.get("family") or None, params.get("after")
    known = q.families(p)
    if family is not None and family not in known:
        raise BadInput(f"unknown family {family!r}: one of {', '.join(known)}")
    page = q.models(p, family=family, after=after)
    champions: dict[str, Any] = {}
    rows = []
    for version, item in page.rows:
        fam = str(item.get("family", ""))
        if fam not in champions:
            champ = q.champion(p, fam)
            champions[fam] = champ
        champ = champions[fam]
        pkg = q.package(p, version, fam)
        metrics = dict((pkg.metrics if pkg else None) or item.get("metrics") or {})
        rows.append(
            [
                _model_link(version),
                fam,
                badge(pkg.display_status if pkg else "Unregistered"),
                "champion" if champ is not None and champ.model_version == version else "",
                *_metric_cells(
                    metrics, champ.metrics if champ is not None and champ.model_version != version else None
                ),
                item.get("dataset_version", ""),
            ]
        )
    choose = h(
        "form",
        h(
            "p",
            h("label", "Family", for_="f-family"),
            h(
                "select",
                h("option", "all", value=""),
                *(h("option", f, value=f, selected=f == family) for f in known),
                id="f-family",
                name="family",
            ),
            class_="field",
        ),
        h("button", "Show", type="submit"),
        action="/dashboard/models",
        method="get",
    )
    compare = h(
        "form",
        input_field("Version A", "a", required=True, maxlength="200"),
        input_field("Version B", "b", required=True, maxlength="200"),
        h("button", "Compare", type="submit"),
        action="/dashboard/changelog",
        method="get",
        class_="inline",
        aria_label="changelog between two versions",
    )
    return Html(
        choose
        + table(
            ["version", "family", "status", "alias", *(f"{m} (Δ champion)" for m in KEY_METRICS[:4]), "dataset"],
            rows,
            caption="model versions, newest first",
            empty="no model trained yet: docllm train FAMILY",
        )
        + pager("/dashboard/models", next_after=page.next_after, first=after is None, family=family)
        + h("h2", "Changelog")
        + compare
    )


def model(p: Platform, params: dict[str, str], view: View) -> Html:
    version = params.get("version", "")
    item = q.model(p, version)
    if item is None:
        raise LookupError(f"no model {version!r}")
    fam = str(item.get("family", ""))
    pkg = q.package(p, version, fam)
    champ = q.champion(p, fam)
    metrics = dict((pkg.metrics if pkg else None) or item.get("metrics") or {})
    base = champ.metrics if champ is not None and champ.model_version != version else {}
    metric_rows = [
        [name, f"{value:.4g}" if isinstance(value, int | float) else value, base.get(name, "")]
        for name, value in sorted(metrics.items())
    ]
    evaluation = q.evaluation(p, pkg.evaluation_id if pkg else None)
    decisions = q.decisions(p, version)
    decision_rows = [
        [
            d.get("at"),
            badge(d.get("status")),
            d.get("decided_by"),
            "yes" if d.get("override") else "",
            h("ul", *(h("li", r) for r in d.get("reasons") or [])),
        ]
        for d in decisions
    ]
    deployments = [d for _, d in q.deployment_history(p, limit=200).rows if d.get("model_version") == version][:10]
    lineage = table(
        ["step", "what"],
        [
            ["dataset", item.get("dataset_version", "")],
            ["tokenizer", item.get("tokenizer_version", "")],
            ["training job", item.get("job", "")],
            ["export", item.get("export_uri", "")],
            ["evaluation", (evaluation or {}).get("evaluation_id", "")],
            ["decisions", len(decisions)],
            [
                "deployments",
                join(
                    (
                        h("span", f"{d.get('target')} {d.get('status', '')} {d.get('started_at', '')}")
                        for d in deployments
                    ),
                    "; ",
                ),
            ],
        ],
        caption="lineage: documents → dataset → tokenizer → training → evaluation → decision → deployment",
    )
    actions: list[Html] = [_actions_note(view)]
    if view.csrf is not None:
        actions.append(
            h(
                "div",
                form(
                    "/dashboard/review",
                    h("input", type="hidden", name="version", value=version),
                    input_field("Why (recorded with your name)", "reason", required=True, maxlength="2000"),
                    h(
                        "p",
                        h("label", "Decision", for_="f-decision"),
                        h(
                            "select",
                            h("option", "approve", value="approve"),
                            h("option", "reject", value="reject"),
                            id="f-decision",
                            name="decision",
                        ),
                        class_="field",
                    ),
                    csrf=view.csrf,
                    submit="Submit review",
                    class_="inline",
                    aria_label="approve or reject",
                ),
                form(
                    "/dashboard/verify",
                    h("input", type="hidden", name="version", value=version),
                    csrf=None,  # read-only: a GET, which AWS's read-only pages allow too
                    method="get",
                    submit="Verify manifest now",
                    class_="inline",
                    aria_label="verify the manifest",
                ),
            )
        )
    report = (
        h("p", h("a", "evaluation report (with its plots)", href=url("/dashboard/report", version=version)))
        if evaluation and evaluation.get("html_uri")
        else h("p", "no evaluation report yet", class_="muted")
    )
    status = pkg.display_status if pkg else "Unregistered"
    rolled = (
        message(f"rolled back by {pkg.rolled_back_alarm} (incident {pkg.rollback_incident})", kind="error")
        if pkg is not None and pkg.rolled_back
        else Html("")
    )
    return Html(
        h("p", badge(status), " ", fam, " · champion: ", _model_link(champ.model_version) if champ else "none")
        + rolled
        + join(view.notices)
        + join(actions)
        + h("h2", "Metrics against the champion")
        + table(
            ["metric", version, f"champion {champ.model_version if champ else ''}"],
            metric_rows,
            caption="metrics",
            empty="no metrics",
        )
        + report
        + h("h2", "Gate decisions")
        + table(
            ["at", "status", "by", "override", "reasons"],
            decision_rows,
            caption="decisions, oldest first",
            empty="no decision yet",
        )
        + h("h2", "Lineage")
        + lineage
        + h("h2", "Manifest")
        + h("p", pkg.approval_description or "" if pkg else "not registered")
    )


def changelog(p: Platform, params: dict[str, str], view: View) -> Html:
    """Two versions side by side: dataset diff (documents added, removed, changed), tokenizer,
    training settings and metrics."""
    a_name, b_name = params.get("a", ""), params.get("b", "")
    a, b = q.model(p, a_name), q.model(p, b_name)
    missing = [n for n, m in ((a_name, a), (b_name, b)) if m is None]
    if missing:
        raise BadInput(f"no model {', '.join(repr(m) for m in missing)}: pick versions from the models list")
    assert a is not None and b is not None
    from docllm.dataset.versions import diff_manifests, load_manifest
    from docllm.exceptions import NotFoundError

    diff_html: Html
    try:
        ma = load_manifest(p.objects, p.settings.artifact_bucket, str(a.get("dataset_version", "")))
        mb = load_manifest(p.objects, p.settings.artifact_bucket, str(b.get("dataset_version", "")))
        d = diff_manifests(ma, mb)
        limit = 50
        diff_html = Html(
            h("p", f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")
            + table(
                ["change", "document"],
                [
                    *([h("span", "added", class_="diff-added"), _doc_link(k)] for k in d.added[:limit]),
                    *([h("span", "removed", class_="diff-removed"), k] for k in d.removed[:limit]),
                    *(["changed", _doc_link(k)] for k in d.changed[:limit]),
                ],
                caption=f"dataset {ma.version} → {mb.version} (first {limit} of each)",
                empty="same documents",
            )
        )
    except NotFoundError as e:
        diff_html = message(f"dataset manifest unavailable: {e}")
    settings = sorted({k for k in (*a, *b) if k not in ("metrics", "version")})
    setting_rows = [
        [k, _short(a.get(k)), _short(b.get(k)), "" if a.get(k) == b.get(k) else "changed"] for k in settings
    ]
    ma_, mb_ = a.get("metrics") or {}, b.get("metrics") or {}
    pa, pb = q.package(p, a_name), q.package(p, b_name)
    ma_ = {**ma_, **(pa.metrics if pa else {})}
    mb_ = {**mb_, **(pb.metrics if pb else {})}
    metric_rows = [[k, ma_.get(k, ""), mb_.get(k, "")] for k in sorted(set(ma_) | set(mb_))]
    return Html(
        h("p", _model_link(a_name), " → ", _model_link(b_name))
        + h("h2", "Documents")
        + diff_html
        + h("h2", "Tokenizer, data and training settings")
        + table(["setting", a_name, b_name, ""], setting_rows, caption="settings")
        + h("h2", "Metrics")
        + table(["metric", a_name, b_name], metric_rows, caption="metrics", empty="no metrics")
    )


def _short(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 120 else text[:117] + "…"


# -- benchmarks -----------------------------------------------------------------------------------


def benchmarks(p: Platform, params: dict[str, str], view: View) -> Html:
    files = q.benchmarks(p)
    page = q.models(p, limit=10)
    rows = []
    for version, item in page.rows:
        pkg = q.package(p, version, str(item.get("family", "")))
        evaluation = q.evaluation(p, pkg.evaluation_id if pkg else None) or {}
        results = evaluation.get("benchmarks") or {}
        text = "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in m.items())
            for name, m in sorted(results.items())
            if isinstance(m, dict)
        )
        metrics = (pkg.metrics if pkg else None) or {}
        standard = ", ".join(f"{k} {metrics[k]:.4g}" for k in KEY_METRICS if isinstance(metrics.get(k), int | float))
        rows.append([_model_link(version), standard or "—", text or "—"])
    upload: Html = _actions_note(view)
    if view.csrf is not None:
        upload = form(
            "/dashboard/benchmarks",
            input_field(
                "Benchmark file (a task YAML, lm-evaluation-harness shape)",
                "file",
                kind="file",
                required=True,
                accept=".yaml,.yml,.jsonl,.json",
            ),
            csrf=view.csrf,
            submit="Upload",
            enctype="multipart/form-data",
            aria_label="upload a benchmark",
        )
    return Html(
        join(view.notices)
        + table(["benchmark", "measures"], STANDARD_BENCHMARKS, caption="standard benchmarks (every evaluation)")
        + table(
            ["file", "bytes", "uploaded"],
            ([f["key"], f["size"], f["uploaded"]] for f in files),
            caption="custom benchmarks",
            empty="none uploaded",
        )
        + h("h2", "Upload")
        + upload
        + h("h2", "Results of the newest versions")
        + table(["version", "standard", "custom benchmarks"], rows, caption="results per version", empty="no model yet")
    )


# -- deployments and incidents ----------------------------------------------------------------------


def deployments(p: Platform, params: dict[str, str], view: View) -> Html:
    after = params.get("after")
    ends = q.endpoints(p)
    current = table(
        ["target", "model", "traffic", "previous"],
        (
            [
                e["target"],
                _model_link(e.get("model_version")),
                _traffic(e),
                _model_link(e.get("previous_version")),
            ]
            for e in ends
        ),
        caption="targets",
        empty="nothing deployed",
    )
    page = q.deployment_history(p, after=after)
    history = table(
        ["started", "target", "model", "previous", "status"],
        (
            [
                d.get("started_at"),
                d.get("target"),
                _model_link(d.get("model_version")),
                d.get("previous_version") or "",
                badge(d.get("status")),
            ]
            for _, d in page.rows
        ),
        caption="history (by target, newest first)",
        empty="no deployment yet",
    )
    forms: list[Html] = [_actions_note(view)]
    if view.csrf is not None:
        for e in ends:
            target = str(e["target"])
            forms.append(
                form(
                    "/dashboard/rollback",
                    h("input", type="hidden", name="target", value=target),
                    input_field(f"Why roll back {target}", f"reason-{target}", required=True, maxlength="2000"),
                    csrf=view.csrf,
                    submit=f"Roll back {target} to the previous approved version",
                    class_="inline",
                    aria_label=f"roll back {target}",
                )
            )
    actions = q.actions(p)
    action_rows = [
        [a.get("at"), a.get("who"), a.get("action"), a.get("subject"), a.get("why")] for _, a in actions.rows
    ]
    return Html(
        join(view.notices)
        + current
        + join(forms)
        + h("h2", "History")
        + history
        + pager("/dashboard/deployments", next_after=page.next_after, first=after is None)
        + h("h2", "Actions taken here")
        + table(
            ["at", "who", "action", "subject", "why"],
            action_rows,
            caption="who did what from the dashboard, and why",
            empty="none yet",
        )
    )


def _traffic(endpoint: dict[str, Any]) -> str:
    canary = endpoint.get("canary") or {}
    if canary and canary.get("status") in (None, "baking", "running"):
        pct = canary.get("percent") or canary.get("canary_percent")
        return f"canary {canary.get('model_version', '')} {pct}%"
    return "100%"


def incidents(p: Platform, params: dict[str, str], view: View) -> Html:
    start = _int(params.get("start"), "start", default=0, high=10**6)
    found, more = q.incidents(p, start=start)
    rows = [
        [
            h("a", i.incident_id, href=url("/dashboard/incident", id=i.incident_id)),
            badge(i.status),
            i.severity,
            i.target,
            _model_link(i.bad_version),
            _model_link(i.restored_version),
            i.opened_at,
            i.summary,
        ]
        for i in found
    ]
    nav = []
    if more:
        nav.append(h("a", "next page →", href=url("/dashboard/incidents", start=start + q.PAGE)))
    return Html(
        table(
            ["incident", "status", "severity", "target", "bad version", "restored", "opened", "summary"],
            rows,
            caption="incidents, newest first",
            empty="no incidents",
        )
        + (h("nav", *nav, class_="pager", aria_label="pages") if nav else "")
    )


def incident(p: Platform, params: dict[str, str], view: View) -> Html:
    iid = params.get("id", "")
    found = q.incident(p, iid)
    if found is None:
        raise LookupError(f"no incident {iid!r}")
    timeline = h(
        "ol",
        *(h("li", h("time", e.at, datetime=e.at), " ", h("strong", e.kind), " — ", e.summary) for e in found.timeline),
        class_="timeline",
    )
    return Html(
        h("p", badge(found.status), f" {found.severity} · {found.target} · alarm {found.alarm_name}")
        + h("p", "bad version ", _model_link(found.bad_version), " → restored ", _model_link(found.restored_version))
        + h("h2", "Timeline")
        + timeline
        + (h("p", f"cause: {found.cause}") if found.cause else "")
    )


# -- ask ------------------------------------------------------------------------------------------


def ask(p: Platform, params: dict[str, str], view: View, *, answer: Any = None) -> Html:
    question = params.get("question", "")
    box = h(
        "form",
        input_field("Your question", "question", value=question, kind="textarea", required=True, maxlength="2000"),
        h("button", "Ask", type="submit"),
        action="/dashboard/ask",
        method="get",
        aria_label="ask a question",
    )
    shown: Html = join(view.notices)
    if answer is not None:
        if answer.abstained:
            shown += message(
                f"No answer: {answer.reason or 'the documentation does not cover it'}. {answer.answer}".strip()
            )
        else:
            shown += h("div", answer.answer, class_="answer", aria_live="polite")
        cites = [
            h(
                "li",
                h(
                    "a",
                    f"[{n}] {c.title} › {' › '.join(c.heading_path)}",
                    href=url("/dashboard/passage", key=c.doc_key, chunk=c.chunk_id),
                ),
                h("div", c.quote[:300], class_="muted"),
            )
            for n, c in enumerate(answer.citations, 1)
        ]
        shown += h("h2", "Citations") + (h("ol", *cites, class_="citations") if cites else message("no citations"))
        pages = answer.pages_to_read()
        if pages:
            shown += h("h2", "Pages that may cover it") + h(
                "p",
                "Search results, not citations: nothing in them was checked to answer the question.",
                class_="muted",
            )
            links = [
                h("li", h("a", f"{d.title} ({d.doc_key})", href=url("/dashboard/passage", key=d.doc_key, chunk=c)))
                for d in pages
                for c in d.chunk_ids[:1]
            ]
            shown += h("ul", *links, class_="pages")
        shown += h("p", f"model {answer.model_version} · {answer.latency_ms:.0f} ms", class_="muted")
    return Html(box + shown)


def _int(raw: str | None, name: str, *, default: int, high: int) -> int:
    if raw in (None, ""):
        return default
    assert raw is not None
    if not raw.isdigit() or int(raw) > high:
        raise BadInput(f"{name} must be a whole number from 0 to {high}")
    return int(raw)

"""``POST /v1/ask`` end to end on 127.0.0.1: latency under concurrent clients, answer quality on the dev set.

The platform is ``docllm up`` on a data directory that holds an Approved ``tiny-s3`` model
(the S3 guide ingested); if nothing is deployed on the ``local`` target yet, the benchmark deploys
the newest approved version with ``docllm deploy VERSION --target local``. Clients authenticate
with the data directory's API key, as any client does. The per-key rate limit is raised for the
run (``DOCLLM_ASK_RATE``/``DOCLLM_ASK_BURST``): it is a policy, not a cost, and four clients
asking back to back would otherwise measure it.

The dev set (``bench/serve/devset.jsonl``, written from ``../shared/corpus/awsdocs``, S3 guide) holds
answerable questions, each with a reference answer and the page(s) that answer it, and questions
the documentation does not cover (``answer: null``). Metrics, over one pass of the dev set:

- citation hit rate: answerable questions whose citations include an answering page (and, to tell
  retrieval from generation, the retrieval hit rate: an answering page among the documents offered);
- answer token F1: :func:`docllm.evaluation.scoring.token_f1` of the answer against the reference
  (an abstention scores what its fixed sentence scores: about nothing);
- unsupported-token rate: unsupported factual tokens over factual tokens in the answers returned
  (:mod:`docllm.evaluation.grounding`, the measure the answer path's grounding check uses);
- correct-abstention rate: not-covered questions that abstain;
- cited-answer share: answerable questions answered (not abstained) with at least one citation,
  and the count of answers returned without a citation (the goal: none);
- abstentions pointing to an answering page: answerable questions that abstained while naming an
  answering page among the pages to read (:meth:`docllm.answers.models.Answer.pages_to_read`, what
  ``docllm ask`` and the dashboard show), and the share of not-covered questions shown any page.

The dev set was written with the S3 guide open, in its words, and the answer path's rules were
tuned by reading its misses; so the same metrics (all but F1: there is no reference answer) are also
reported on questions written for another purpose and never used to tune the answer path: the
realistic retrieval set of issue 18 (``bench/search/realset.jsonl``), its S3 questions (paraphrases,
yes/no, "how do I", no heading words, two pages; answering pages from ``expected_doc_keys``) and its
questions about services the corpus does not hold. They are asked once, after the load run, with the
same clients; their latencies are not in the load figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.search.http_platform import PlatformProcess
from docllm.answers.models import Answer
from docllm.evaluation.grounding import factual_tokens
from docllm.evaluation.scoring import token_f1

REPO = Path(__file__).resolve().parents[2]
DEVSET = Path(__file__).resolve().parent / "devset.jsonl"
REALSET = REPO / "bench" / "search" / "realset.jsonl"
FAMILY = "tiny-s3"


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answer: str | None  # the reference answer; None where there is none (not covered, or a held-out question)
    pages: list[str]  # the pages that answer it; none: the documentation does not cover it

    @property
    def covered(self) -> bool:
        return bool(self.pages)


def load_devset(path: Path = DEVSET) -> list[Item]:
    return [Item(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_heldout(path: Path = REALSET, service: str = "s3") -> list[Item]:
    """The realistic retrieval set's questions about ``service`` and those no guide covers (module docstring)."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r["service_hint"] == service or (r["type"] == "not_covered" and not r["expected_doc_keys"]):
            items.append(Item(id=r["id"], question=r["question"], answer=None, pages=r["expected_doc_keys"]))
    return items


def _docllm(data: Path, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), *args, "--json"],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def ensure_deployed(data: Path) -> str:
    """The model version serving on ``local``; deploys the newest approved tiny-s3 if none is."""
    local = [e for e in _docllm(data, "endpoints")["endpoints"] if e.get("target") == "local"]
    if local and local[0].get("model_version"):
        return str(local[0]["model_version"])
    listed = _docllm(data, "models")
    models = listed.get("models", listed) if isinstance(listed, dict) else listed
    approved = [m for m in models if m.get("family") == FAMILY and m.get("status") == "Approved"]
    if not approved:
        raise SystemExit(f"no Approved {FAMILY} model in {data}: approve one first (docllm approve VERSION)")
    version = str(approved[-1]["version"])
    print(f"deploying {version} to local…", file=sys.stderr)
    _docllm(data, "deploy", version, "--target", "local")
    return version


@dataclass
class AskRun:
    latencies_ms: list[float]
    errors: int
    answers: dict[str, dict[str, Any]]  # first answer per dev-set id


def ask_load(url: str, key: str, items: list[Item], *, clients: int, passes: int) -> AskRun:
    """``clients`` threads take questions from a shared list (the dev set ``passes`` times) until it is empty."""
    work = [it for _ in range(passes) for it in items]
    lock = threading.Lock()
    run = AskRun([], 0, {})

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            while True:
                with lock:
                    if not work:
                        return
                    item = work.pop(0)
                t0 = time.perf_counter()
                resp = http.post("/v1/ask", json={"question": item.question})
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if resp.status_code != 200:
                        run.errors += 1
                        print(f"/v1/ask {resp.status_code}: {resp.text[:200]}", file=sys.stderr)
                        continue
                    run.latencies_ms.append(elapsed)
                    run.answers.setdefault(item.id, resp.json())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def quality(items: list[Item], answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    covered = [it for it in items if it.covered and it.id in answers]
    uncovered = [it for it in items if not it.covered and it.id in answers]
    hits = retrieved = cited = uncited = factual = unsupported = pointed = 0.0
    f1s: list[float] = []
    for it in covered:
        a = answers[it.id]
        keys = {c["doc_key"] for c in a["citations"]}
        hits += bool(keys & set(it.pages))
        pointed += bool({d.doc_key for d in Answer.model_validate(a).pages_to_read()} & set(it.pages))
        retrieved += bool({d["doc_key"] for d in a.get("retrieval") or []} & set(it.pages))
        if it.answer is not None:
            f1s.append(token_f1(a["answer"], it.answer))
        cited += (not a["abstained"]) and bool(a["citations"])
    returned = [a for a in answers.values() if not a["abstained"]]
    for a in returned:
        uncited += not a["citations"]
        factual += len(factual_tokens(a["answer"]))
        unsupported += len(a["unsupported"])
    reasons: dict[str, int] = {}
    for a in answers.values():
        if a["abstained"]:
            reasons[a["reason"]] = reasons.get(a["reason"], 0) + 1
    n = max(len(covered), 1)
    return {
        "answerable": len(covered),
        "not_covered": len(uncovered),
        "citation_hit_rate": round(hits / n, 3),
        "retrieval_hit_rate": round(retrieved / n, 3),
        "answer_token_f1": round(statistics.mean(f1s), 3) if f1s else None,
        "unsupported_token_rate": round(unsupported / factual, 3) if factual else 0.0,
        "correct_abstention_rate": round(
            sum(answers[it.id]["abstained"] for it in uncovered) / max(len(uncovered), 1), 3
        ),
        "answered_with_citations": round(cited / n, 3),
        "abstained_pointing_to_an_answering_page": round(pointed / n, 3),
        "not_covered_pointed_to_pages": round(
            sum(bool(Answer.model_validate(answers[it.id]).pages_to_read()) for it in uncovered)
            / max(len(uncovered), 1),
            3,
        ),
        "answers_without_citations": int(uncited),
        "abstentions_by_reason": reasons,
    }


def _limited(items: list[Item], limit: int | None) -> list[Item]:
    if not limit:
        return items
    covered = [it for it in items if it.covered][:limit]
    return covered + [it for it in items if not it.covered][: max(1, limit // 3)]


def write_answers(path: Path, sets: dict[str, tuple[list[Item], dict[str, dict[str, Any]]]]) -> None:
    """Every answer by question, one JSON line each: what was asked, what answers it, what came back."""
    with path.open("w", encoding="utf-8") as out:
        for name, (items, answers) in sets.items():
            for it in items:
                a = answers.get(it.id)
                if a is None:
                    continue
                cited = sorted({c["doc_key"] for c in a["citations"]})
                row = {
                    "set": name, "id": it.id, "question": it.question, "pages": it.pages,
                    "hit": bool(set(cited) & set(it.pages)), "abstained": a["abstained"], "reason": a["reason"],
                    "answer": a["answer"], "cited": cited, "offered": [d["doc_key"] for d in a.get("retrieval") or []],
                }  # fmt: skip
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


def bench_ask(
    data: Path, *, clients: int, passes: int, limit: int | None, answers_out: Path | None = None
) -> dict[str, Any]:
    """Start the platform on ``data``, make sure a model serves, load ``/v1/ask``, score the answers
    (the dev set, then the held-out questions once: module docstring); ``answers_out`` gets every
    answer by question (:func:`write_answers`)."""
    items = _limited(load_devset(), limit)
    heldout = _limited(load_heldout(), limit)
    os.environ.setdefault("DOCLLM_ASK_RATE", "1000")
    os.environ.setdefault("DOCLLM_ASK_BURST", "1000")
    proc = PlatformProcess(data)
    proc.start(timeout_s=180)
    try:
        version = ensure_deployed(data)
        with httpx.Client(base_url=proc.api_url, headers={"Authorization": f"Bearer {proc.api_key}"}) as http:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # the engine loads after the deployment is recorded
                r = http.post("/v1/ask", json={"question": items[0].question}, timeout=120)
                if r.status_code == 200:
                    break
                time.sleep(1)
            else:
                raise SystemExit(f"/v1/ask did not answer 200 within 5 minutes: {r.status_code} {r.text[:200]}")
        run = ask_load(proc.api_url, proc.api_key, items, clients=clients, passes=passes)
        held = ask_load(proc.api_url, proc.api_key, heldout, clients=clients, passes=1)
    finally:
        proc.stop()
    if answers_out is not None:
        write_answers(answers_out, {"dev": (items, run.answers), "heldout": (heldout, held.answers)})
    lat = run.latencies_ms
    return {
        "model_version": version,
        "clients": clients,
        "requests": len(lat),
        "errors": run.errors,
        "p50_ms": round(percentile(lat, 0.5), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "mean_ms": round(statistics.mean(lat), 1) if lat else float("nan"),
        "completion_tokens_mean": round(
            statistics.mean(a.get("completion_tokens") or 0 for a in run.answers.values()), 1
        )
        if run.answers
        else 0,
        **quality(items, run.answers),
        "heldout": {"set": f"{REALSET.relative_to(REPO)}: s3 + not_covered", "errors": held.errors}
        | quality(heldout, held.answers),
    }

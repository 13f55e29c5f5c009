"""Evaluation job: a trained model and its dataset version in, ``report.json`` + ``report.html`` out.

Runs under the SageMaker container contract (:mod:`docllm.jobs.contract`), like training, in
``containers/evaluate/``. What it measures is defined in docs/evaluation.md: held-out perplexity and
next-token accuracy on the test split (documents the model never trained on), Q&A items built from
those documents by fixed rules, the judge-free hallucination rate and the domain-vocabulary score,
and every custom benchmark uploaded under the raw bucket's ``benchmarks/`` prefix.

Hyperparameters (all strings):
    ``evaluation_id``   this evaluation's id (the job name)
    ``model_version``, ``family``, ``dataset_version``, ``tokenizer_version``
    ``output_uri``      s3:// prefix to publish the report and ``result.json`` to (empty: keep local)
    ``champion``        JSON ``{"model_version", "metrics"}`` of the family's champion, or empty
    ``max_qa_items``    Q&A items built from the test split (default 200)
    ``max_heldout_tokens``  predicted tokens the held-out loss covers at most (default 200000)
    ``benchmarks``      JSON list of keys under benchmarks/ to run; empty: all in the channel
Channels: ``model`` (the training job's output: ``hf/``, ``result.json``, ``history.jsonl``),
``dataset`` (``train.jsonl``, ``test.jsonl``, ``manifest.json``) and, when any exist, ``benchmarks``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job
from docllm.records import utcnow

if TYPE_CHECKING:
    from docllm.evaluation.model_metrics import LanguageModel
    from docllm.evaluation.report import BenchmarkResult, HallucinationSummary, QAResult, TrainingSummary

#: Tokens generated for a Q&A item: a cloze answer is short, a section's first sentence longer.
_QA_NEW_TOKENS = {"heading": 40}
_QA_DEFAULT_NEW_TOKENS = 16
_BENCHMARK_DEFAULT_NEW_TOKENS = 32


def _documents(split_file: Path) -> list[tuple[str, str]]:
    """``(doc_key, text)`` per document of a split file, chunks joined in order."""
    chunks: dict[str, list[str]] = defaultdict(list)
    if not split_file.exists():
        return []
    with split_file.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                chunks[row["doc_key"]].append(row["text"])
    return [(key, "\n\n".join(parts)) for key, parts in sorted(chunks.items())]


def _iter_texts(split_file: Path) -> Iterator[str]:
    if split_file.exists():
        with split_file.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["text"]


def _json_hp(env: JobEnvironment, name: str, default: Any) -> Any:
    raw = env.hp(name, "")
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise JobInputError(f"hyperparameter {name!r} is not valid JSON: {e}") from e


def _int_hp(env: JobEnvironment, name: str, default: int) -> int:
    raw = env.hp(name, str(default))
    try:
        return int(raw)
    except ValueError as e:
        raise JobInputError(f"hyperparameter {name!r} must be an integer, got {raw!r}") from e


def run_qa(lm: LanguageModel, test_docs: list[tuple[str, str]], max_items: int) -> tuple[QAResult, list[Any]]:
    """Q&A accuracy on items built from held-out documents; also returns (generation, source) pairs."""
    from docllm.evaluation.qa import build_qa_items
    from docllm.evaluation.report import QAExample, QAResult, RuleScore
    from docllm.evaluation.scoring import answer_span, exact_match, token_f1

    items = build_qa_items(test_docs, max_items=max_items)
    per_rule: dict[str, list[tuple[float, float]]] = defaultdict(list)
    examples: list[QAExample] = []
    pairs: list[tuple[str, list[str]]] = []
    for item in items:
        generated = lm.continue_greedy(
            item.prompt, max_new_tokens=_QA_NEW_TOKENS.get(item.rule, _QA_DEFAULT_NEW_TOKENS)
        )
        span = answer_span(generated, item.answer)
        em, f1 = exact_match(span, item.answer), token_f1(span, item.answer)
        per_rule[item.rule].append((em, f1))
        pairs.append((generated, [item.source]))
        if len(examples) < 25:
            examples.append(
                QAExample(
                    rule=item.rule,
                    prompt=item.prompt[-300:],
                    answer=item.answer,
                    prediction=generated,
                    exact_match=em,
                    token_f1=f1,
                )
            )
    scores = [s for rule in per_rule.values() for s in rule]

    def mean(values: list[float]) -> float | None:
        # No item is "not measured", never a score of 0 the gate would read as a regression.
        return sum(values) / len(values) if values else None

    return (
        QAResult(
            items=len(scores),
            exact_match=mean([e for e, _ in scores]),
            token_f1=mean([f for _, f in scores]),
            by_rule={
                rule: RuleScore(items=len(v), exact_match=mean([e for e, _ in v]), token_f1=mean([f for _, f in v]))
                for rule, v in sorted(per_rule.items())
            },
            examples=examples,
        ),
        pairs,
    )


def run_hallucination(lm: LanguageModel, pairs: list[Any], train_file: Path) -> HallucinationSummary:
    from docllm.evaluation.grounding import domain_vocab_score, domain_vocabulary, hallucination_rate
    from docllm.evaluation.report import HallucinationSummary, KindCount

    result = hallucination_rate(pairs)
    vocab = domain_vocabulary(_iter_texts(train_file))
    return HallucinationSummary(
        factual_tokens=result.factual_tokens,
        unsupported=result.unsupported,
        rate=result.rate,
        by_kind={k: KindCount(total=v.total, unsupported=v.unsupported) for k, v in sorted(result.by_kind.items())},
        domain_vocab_score=domain_vocab_score([g for g, _ in pairs], vocab),
        examples=list(result.examples)[:20],
    )


def run_benchmarks(lm: LanguageModel, channel: Path | None, wanted: list[str]) -> list[BenchmarkResult]:
    """Every custom benchmark in the channel (or those named), each scored alone: one bad file is a
    result with its error, never a failed evaluation."""
    from docllm.evaluation.benchmarks import aggregate, parse_benchmarks, score_generation, score_loglikelihood
    from docllm.evaluation.report import BenchmarkResult

    if channel is None or not channel.is_dir():
        return []
    files = {p.relative_to(channel).as_posix(): p.read_bytes() for p in sorted(channel.rglob("*")) if p.is_file()}
    benchmarks, errors = parse_benchmarks(files)
    results = [
        BenchmarkResult(name=e.file, source_key=e.file, kind="invalid", items=0, metrics={}, error=str(e))
        for e in errors
    ]
    for bench in benchmarks:
        if wanted and bench.source_key not in wanted and bench.name not in wanted:
            continue
        per_item: list[dict[str, float]] = []
        examples: list[dict[str, str]] = []
        for item in bench.items:
            if bench.kind == "loglikelihood":
                logprob, greedy = lm.continuation_logprob(item.prompt, item.continuation)
                scores = score_loglikelihood(logprob, greedy)
                shown = f"logprob {logprob:.2f}, greedy {greedy}"
            else:
                shown = lm.continue_greedy(
                    item.prompt, max_new_tokens=item.max_tokens or _BENCHMARK_DEFAULT_NEW_TOKENS, until=item.until
                )
                scores = score_generation(item, shown)
            per_item.append(scores)
            if len(examples) < 10:
                examples.append({"prompt": item.prompt[-300:], "expected": item.expected, "output": shown})
        results.append(
            BenchmarkResult(
                name=bench.name,
                source_key=bench.source_key,
                kind=bench.kind,
                items=len(per_item),
                metrics=aggregate(bench, per_item),
                error=None,
                examples=examples,
            )
        )
    return results


def read_training(model_dir: Path) -> TrainingSummary | None:
    from docllm.evaluation.report import TrainingPoint, TrainingSummary

    result_file = model_dir / "result.json"
    metrics: dict[str, float] = {}
    if result_file.exists():
        result = json.loads(result_file.read_text(encoding="utf-8"))
        metrics = {k: float(v) for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    history_file = model_dir / "history.jsonl"
    if not history_file.exists() and not metrics:
        return None
    points: list[TrainingPoint] = []
    if history_file.exists():
        for line in history_file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            loss = float(r["loss"])
            points.append(
                TrainingPoint(
                    step=int(r["step"]),
                    tokens=int(r["tokens_seen"]),
                    train_loss=loss if r["kind"] == "train" else None,
                    val_loss=loss if r["kind"] == "val" else None,
                    lr=float(r["lr"]) if r.get("lr") is not None else None,
                )
            )
    return TrainingSummary(history=points, metrics=metrics)


def main(env: JobEnvironment) -> None:
    from docllm.evaluation.html import render_html
    from docllm.evaluation.model_metrics import LanguageModel, heldout_metrics
    from docllm.evaluation.report import ChampionComparison, EvaluationReport, HeldOut, headline_metrics, to_json

    started = time.monotonic()
    model_dir = env.channels.get("model")
    dataset_dir = env.channels.get("dataset")
    if model_dir is None or not (model_dir / "hf").is_dir():
        raise JobInputError("channel 'model' must hold the training output with its hf/ export")
    if dataset_dir is None or not dataset_dir.is_dir():
        raise JobInputError("channel 'dataset' is missing")
    evaluation_id = env.hp("evaluation_id", os.environ.get("TRAINING_JOB_NAME", "local-evaluation"))
    lm = LanguageModel.load(model_dir / "hf", threads=int(os.environ.get("SM_NUM_CPUS", "0")) or None)

    # The test split; a dataset too small to have one is measured on its validation split (also held
    # out from training), and the report says which.
    split = "test"
    test_docs = _documents(dataset_dir / "test.jsonl")
    if not test_docs:
        split, test_docs = "validation", _documents(dataset_dir / "validation.jsonl")
    if not test_docs:
        raise JobInputError("the dataset version has neither a test nor a validation split: nothing held out")
    timings = {"load_s": time.monotonic() - started}
    mark = time.monotonic()
    held = heldout_metrics(lm, (text for _, text in test_docs), max_tokens=_int_hp(env, "max_heldout_tokens", 200_000))
    timings["heldout_s"], mark = time.monotonic() - mark, time.monotonic()
    qa, pairs = run_qa(lm, test_docs, _int_hp(env, "max_qa_items", 200))
    timings["qa_s"], mark = time.monotonic() - mark, time.monotonic()
    hallucination = run_hallucination(lm, pairs, dataset_dir / "train.jsonl")
    timings["hallucination_s"], mark = time.monotonic() - mark, time.monotonic()
    benchmarks = run_benchmarks(lm, env.channels.get("benchmarks"), list(_json_hp(env, "benchmarks", [])))
    timings["benchmarks_s"] = time.monotonic() - mark
    champion_hp = _json_hp(env, "champion", None)
    training = read_training(model_dir)
    report = EvaluationReport(
        evaluation_id=evaluation_id,
        model_version=env.hp("model_version", "unknown"),
        family=env.hp("family", "custom"),
        dataset_version=env.hp("dataset_version", "unknown"),
        tokenizer_version=env.hp("tokenizer_version", "unknown"),
        created_at=utcnow(),
        elapsed_s=0.0,
        heldout=HeldOut(
            split=split,
            documents=held.documents,
            tokens=held.tokens,
            loss=held.loss,
            perplexity=held.perplexity,
            next_token_accuracy=held.next_token_accuracy,
        ),
        qa=qa,
        hallucination=hallucination,
        benchmarks=benchmarks,
        training=training,
        champion=ChampionComparison.model_validate(champion_hp) if champion_hp else None,
        metrics={},
    )
    report.metrics = headline_metrics(report)
    report.elapsed_s = round(time.monotonic() - started, 3)
    body = to_json(report)
    out = env.model_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(body)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    import hashlib

    result = {
        "evaluation_id": evaluation_id,
        "model_version": report.model_version,
        "family": report.family,
        "report_path": "report.json",
        "html_path": "report.html",
        "report_sha256": hashlib.sha256(body).hexdigest(),
        "metrics": report.metrics,
        "benchmarks": {b.name: b.metrics for b in benchmarks if b.error is None},
        "elapsed_s": report.elapsed_s,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "qa_items": qa.items,
        "heldout_tokens": held.tokens,
        "provenance": _provenance(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True), encoding="utf-8")
    output_uri = env.hp("output_uri", "")
    if output_uri:
        contract.publish_directory(out, output_uri)  # result.json goes last
    print(json.dumps({"evaluation_id": evaluation_id, "elapsed_s": report.elapsed_s}), file=sys.stderr)


def _provenance() -> dict[str, Any]:
    from docllm.provenance import code_identity, environment_identity

    return {"code": code_identity(), "environment": environment_identity()}


if __name__ == "__main__":
    run_job(main)

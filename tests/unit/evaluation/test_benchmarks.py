"""Custom benchmark files: JSONL, the lm-evaluation-harness YAML subset, refusals, scoring, aggregation."""

from __future__ import annotations

import json
import math

import pytest

from docllm.evaluation.benchmarks import (
    Benchmark,
    BenchmarkError,
    BenchmarkItem,
    aggregate,
    parse_benchmarks,
    score_generation,
    score_loglikelihood,
    validate_benchmark_file,
)


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


QA_ROWS = jsonl(
    {"question": "What is the maximum object size?", "answer": "5 TB"},
    {"question": "How many buckets by default?", "answer": "100"},
)

GEN_YAML = b"""
task: s3_limits
tag: [limits, s3]
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: data/limits.jsonl
test_split: test
output_type: generate_until
description: "Answer about Amazon S3.\\n\\n"
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 16
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
  - metric: token_f1
filter_list:
  - name: strip
    filter:
      - function: remove_whitespace
      - function: take_first
metadata:
  version: 1.0
"""

LL_YAML = b"""
task: s3_ll
dataset_path: json
dataset_kwargs:
  data_files: ../data/limits.jsonl
test_split: train
output_type: loglikelihood
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: "{{answer}}"
"""


def test_jsonl_file_is_a_benchmark_with_defaults() -> None:
    body = jsonl(
        {"prompt": "Max size:", "expected": "5 TB", "tags": ["limits"]},
        {"prompt": "Flag:", "expected": "--bucket", "metric": "contains", "max_tokens": 8, "until": ["\n\n"]},
    )
    (bench,), errors = parse_benchmarks({"team/faq.jsonl": body})
    assert errors == []
    assert (bench.name, bench.source_key, bench.kind, bench.format) == (
        "team/faq",
        "team/faq.jsonl",
        "generate_until",
        "jsonl",
    )
    first, second = bench.items
    assert (first.metric, first.tags, first.max_tokens, first.until) == ("exact_match", ("limits",), 64, ("\n",))
    assert (second.metric, second.max_tokens, second.until) == ("contains", 8, ("\n\n",))
    assert bench.metrics == ("exact_match", "contains")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"prompt": "p"}, "expected"),
        ({"prompt": "p", "expected": "e", "metric": "bleu"}, "metric"),
        ({"prompt": "p", "expected": "e", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "p", "expected": "e", "tags": [1]}, "tags"),
        ({"prompt": "p", "expected": "e", "until": []}, "until"),
        ({"prompt": "p", "expected": "e", "expect": "typo"}, "expect"),
    ],
)
def test_bad_jsonl_lines_are_refused_with_file_line_and_field(line: dict, field: str | None) -> None:
    body = jsonl({"prompt": "ok", "expected": "ok"}, line)
    benches, (error,) = parse_benchmarks({"faq.jsonl": body})
    assert benches == []
    assert (error.file, error.line) == ("faq.jsonl", 2)
    if field:
        assert error.field == field and f"faq.jsonl:2 ({field})" in str(error)


def test_tags_as_a_plain_string_count_as_one_tag() -> None:
    (bench,), _ = parse_benchmarks({"f.jsonl": jsonl({"prompt": "p", "expected": "e", "tags": "x"})})
    assert bench.items[0].tags == ("x",)


def test_generate_until_yaml_renders_prompts_and_reads_generation_settings() -> None:
    files = {"tasks/limits.yaml": GEN_YAML, "tasks/data/limits.jsonl": QA_ROWS}
    (bench,), errors = parse_benchmarks(files)
    assert errors == []
    assert (bench.name, bench.kind, bench.format, bench.metrics) == (
        "s3_limits", "generate_until", "lm-eval-yaml", ("exact_match", "token_f1"))  # fmt: skip
    assert bench.data_files == ("tasks/data/limits.jsonl",)
    item = bench.items[0]
    assert item.prompt == "Answer about Amazon S3.\n\nQ: What is the maximum object size?\nA:"
    assert (item.expected, item.until, item.max_tokens, item.tags) == ("5 TB", ("\n",), 16, ("limits", "s3"))


def test_data_files_of_a_yaml_are_not_benchmarks_of_their_own() -> None:
    benches, errors = parse_benchmarks({"tasks/limits.yaml": GEN_YAML, "tasks/data/limits.jsonl": QA_ROWS})
    assert [b.name for b in benches] == ["s3_limits"] and errors == []


def test_loglikelihood_yaml_uses_the_target_delimiter_and_default_metrics() -> None:
    files = {"ll/task.yml": LL_YAML, "data/limits.jsonl": QA_ROWS}
    (bench,), errors = parse_benchmarks(files)
    assert errors == []
    assert (bench.kind, bench.metrics) == ("loglikelihood", ("perplexity", "acc"))
    item = bench.items[1]
    assert (item.prompt, item.continuation) == ("Q: How many buckets by default?\nA:", " 100")


def test_generate_until_defaults_follow_lm_eval() -> None:
    yaml_body = b"task: t\ndataset_path: json\ndataset_kwargs: {data_files: d.jsonl}\ntest_split: train\n"
    yaml_body += b"doc_to_text: question\ndoc_to_target: answer\n"
    (bench,), _ = parse_benchmarks({"t.yaml": yaml_body, "d.jsonl": QA_ROWS})
    item = bench.items[0]
    assert (item.prompt, item.until, item.max_tokens, item.metrics) == (
        "What is the maximum object size?", ("\n\n",), 256, ("exact_match",))  # fmt: skip


def test_include_merges_a_base_yaml_which_is_not_a_benchmark_itself() -> None:
    base = b"dataset_path: json\ndataset_kwargs: {data_files: d.jsonl}\ntest_split: train\ndoc_to_target: answer\n"
    child = b"include: _base.yaml\ntask: child\ndoc_to_text: 'Q: {{question}}'\n"
    (bench,), errors = parse_benchmarks({"_base.yaml": base, "child.yaml": child, "d.jsonl": QA_ROWS})
    assert errors == [] and bench.name == "child" and bench.items[0].prompt == "Q: What is the maximum object size?"
    assert bench.data_files == ("_base.yaml", "d.jsonl")


def _yaml_error(body: bytes, files: dict[str, bytes] | None = None) -> BenchmarkError:
    benches, errors = parse_benchmarks({"t.yaml": body, "d.jsonl": QA_ROWS, **(files or {})})
    mine = [e for e in errors if e.file != "d.jsonl" or e.field != "answer"]  # d.jsonl alone is no benchmark
    assert [b.name for b in benches] == [] and len(mine) == 1, errors
    return mine[0]


VALID = b"task: t\ndataset_path: json\ndataset_kwargs: {data_files: d.jsonl}\ntest_split: train\n"
VALID += b"doc_to_text: question\ndoc_to_target: answer\n"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (b"dataset_path: cais/mmlu\n", "dataset_path", "nothing leaves the organisation"),
        (b"dataset_kwargs: {data_files: 'hf://datasets/x/y.jsonl'}\n", "dataset_kwargs.data_files.train",
         "nothing leaves"),
        (b"dataset_kwargs: {data_files: ../../etc/passwd}\n", "dataset_kwargs.data_files.train", "outside"),
        (b"output_type: multiple_choice\n", "output_type", "generate_until and loglikelihood"),
        (b"doc_to_choice: choices\n", "doc_to_choice", "not supported"),
        (b"process_docs: !function utils.process\n", "process_docs", "!function"),
        (b"num_fewshot: 5\n", "num_fewshot", "zero-shot"),
        (b"generation_kwargs: {do_sample: true}\n", "generation_kwargs.do_sample", "greedy"),
        (b"generation_kwargs: {top_p: 0.9}\n", "generation_kwargs.top_p", "greedy"),
        (b"metric_list: [{metric: bleu}]\n", "metric_list", "not supported"),
        (b"metric_list: [{metric: exact_match, ignore_case: false}]\n", "metric_list", "ignore_case"),
        (b"filter_list: [{name: x, filter: [{function: regex}]}]\n", "filter_list", "regex"),
        (b"test_split: validation\n", "test_split", "not among"),
        (b"doc_to_text: '{{ question'\n", "doc_to_text", "Jinja2"),
        (b"dataset_kwargs: {data_files: missing.jsonl}\n", "dataset_kwargs.data_files", "not under benchmarks/"),
    ],
)  # fmt: skip
def test_unsupported_yaml_is_refused_naming_the_field(change: bytes, field: str, words: str) -> None:
    key = change.split(b":", 1)[0]
    body = b"".join(line + b"\n" for line in VALID.splitlines() if not line.startswith(key + b":")) + change
    error = _yaml_error(body)
    assert error.file == "t.yaml" and error.field == field and words in str(error)


def test_a_template_that_names_a_missing_field_is_refused_with_the_data_line() -> None:
    error = _yaml_error(VALID.replace(b"doc_to_text: question", b"doc_to_text: '{{ query }}'"))
    assert (error.file, error.line, error.field) == ("d.jsonl", 1, "doc_to_text") and "query" in str(error)


def test_templates_run_sandboxed() -> None:
    evil = b"doc_to_text: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\""
    error = _yaml_error(VALID.replace(b"doc_to_text: question", evil))
    assert error.field == "doc_to_text"


def test_one_bad_file_does_not_hide_the_others() -> None:
    benches, errors = parse_benchmarks(
        {"a.jsonl": b"not json\n", "b.jsonl": jsonl({"prompt": "p", "expected": "e"}), "c.csv": b"x", "README.md": b"#"}
    )
    assert [b.name for b in benches] == ["b"]
    assert [(e.file, e.line) for e in errors] == [("a.jsonl", 1), ("c.csv", None)]


def test_a_duplicate_name_is_an_error_of_the_later_file() -> None:
    yaml_body = VALID.replace(b"task: t", b"task: faq")
    benches, errors = parse_benchmarks({"faq.jsonl": jsonl({"prompt": "p", "expected": "e"}), "t.yaml": yaml_body,
                                        "d.jsonl": QA_ROWS})  # fmt: skip
    assert [b.source_key for b in benches] == ["faq.jsonl"] and errors[0].file == "t.yaml"


def test_validate_accepts_a_good_file_and_raises_for_a_bad_one() -> None:
    (bench,) = validate_benchmark_file("faq.jsonl", jsonl({"prompt": "p", "expected": "e"}), {})
    assert bench.name == "faq"
    with pytest.raises(BenchmarkError, match=r"faq\.jsonl:1"):
        validate_benchmark_file("faq.jsonl", b"[]\n", {})


def test_validate_a_data_file_rechecks_the_yaml_that_reads_it() -> None:
    (bench,) = validate_benchmark_file("d.jsonl", QA_ROWS, {"t.yaml": VALID})
    assert bench.name == "t"
    with pytest.raises(BenchmarkError, match=r"d\.jsonl:1"):
        validate_benchmark_file("d.jsonl", jsonl({"question": "q"}), {"t.yaml": VALID})


def test_validate_a_yaml_needs_its_data_files_present() -> None:
    with pytest.raises(BenchmarkError, match="not under benchmarks/"):
        validate_benchmark_file("t.yaml", VALID, {})


def test_validate_refuses_a_file_that_is_no_benchmark() -> None:
    with pytest.raises(BenchmarkError, match="not a benchmark"):
        validate_benchmark_file("data.json", b"[]", {})


def test_digest_changes_with_the_data_file() -> None:
    (a,), _ = parse_benchmarks({"t.yaml": VALID, "d.jsonl": QA_ROWS})
    (b,), _ = parse_benchmarks({"t.yaml": VALID, "d.jsonl": QA_ROWS + jsonl({"question": "q", "answer": "a"})})
    assert a.sha256 != b.sha256 and len(b.items) == 3


def test_score_generation_applies_each_metric_of_the_item() -> None:
    item = BenchmarkItem(prompt="p", expected="5 TB", metrics=("exact_match", "token_f1", "contains"))
    assert score_generation(item, " up to 5 TB") == {"exact_match": 0.0, "token_f1": pytest.approx(2 / 3),
                                                     "contains": 1.0}  # fmt: skip


def test_score_loglikelihood_follows_lm_eval() -> None:
    assert score_loglikelihood(-2.0, False) == {"loglikelihood": -2.0, "acc": 0.0}


def test_aggregate_means_per_metric_and_tag_and_perplexity_for_loglikelihood() -> None:
    (bench,), _ = parse_benchmarks({"ll.yaml": LL_YAML.replace(b"../data/", b""), "limits.jsonl": QA_ROWS})
    out = aggregate(bench, [score_loglikelihood(-1.0, True), score_loglikelihood(-3.0, False)])
    assert out == {"loglikelihood": -2.0, "acc": 0.5, "perplexity": pytest.approx(math.exp(2.0))}
    tagged = Benchmark.model_validate(
        {
            **bench.model_dump(),
            "items": [i.model_copy(update={"tags": ("x",)}) for i in bench.items[:1]] + [bench.items[1]],
        }
    )
    out = aggregate(tagged, [score_loglikelihood(-1.0, True), score_loglikelihood(-3.0, False)])
    assert out["tag:x:acc"] == 1.0 and out["tag:x:loglikelihood"] == -1.0


def test_aggregate_refuses_scores_that_do_not_match_the_items() -> None:
    (bench,), _ = parse_benchmarks({"f.jsonl": jsonl({"prompt": "p", "expected": "e"})})
    with pytest.raises(ValueError, match="1 items"):
        aggregate(bench, [])


# ---------------------------------------------------------------- one bad file never stops evaluation


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ answer | regex_replace('(', '') }}", "regex_replace"),
        ("{{ answer | regex_replace('a', '\\\\9') }}", "regex_replace"),
        ("{{ answer | regex_replace('" + "a" * 600 + "', '') }}", "longer than"),
        ("{{ answer | regex_replace(1, '') }}", "both strings"),
        ("{{ answer.split('x', 'y') }}", "TypeError"),
        ("{{ 'x' * 10**9 }}", "exceeds"),
        ("{{ 7 ** 100000 }}", "too large"),
        ("{{ 'x' * 30000 }}", "exceeds"),
        ("{% for i in range(30000) %}x{% endfor %}", "renders more than"),
    ],
)  # fmt: skip
def test_a_template_that_fails_is_that_benchmarks_error_and_the_others_still_run(template: str, words: str) -> None:
    body = VALID.replace(b"doc_to_target: answer", b"doc_to_target: " + json.dumps(template).encode())
    good = jsonl({"prompt": "p", "expected": "e"})
    benches, errors = parse_benchmarks({"t.yaml": body, "d.jsonl": QA_ROWS, "good.jsonl": good})
    assert [b.name for b in benches] == ["good"]
    (error,) = errors
    assert isinstance(error, BenchmarkError) and error.field == "doc_to_target" and words in str(error), error
    assert error.file == "d.jsonl" and error.line == 1 and error.related == ("d.jsonl",)


@pytest.mark.parametrize(
    ("files", "bad"),
    [
        # An unhashable metric: a TypeError deep in the checks.
        ({"j.jsonl": jsonl({"prompt": "p", "expected": "e", "metric": ["exact_match"]})}, "j.jsonl"),
        # Mixed-type keys in dataset_kwargs: sorted() of int and str raises TypeError.
        ({"t.yaml": VALID.replace(b"dataset_kwargs: {data_files: d.jsonl}",
                                  b"dataset_kwargs: {data_files: d.jsonl, 1: x, b: y}")}, "t.yaml"),
        # An unhashable split name.
        ({"t.yaml": VALID.replace(b"test_split: train", b"test_split: [train]")}, "t.yaml"),
        # Nesting deeper than the YAML parser's recursion.
        ({"deep.yaml": b"a: " + b"[" * 5000 + b"]" * 5000}, "deep.yaml"),
    ],
)  # fmt: skip
def test_any_exception_of_a_file_becomes_its_benchmark_error(files: dict[str, bytes], bad: str) -> None:
    good = jsonl({"prompt": "p", "expected": "e"})
    benches, errors = parse_benchmarks({"d.jsonl": QA_ROWS, **files, "good.jsonl": good})
    assert "good" in [b.name for b in benches]
    assert bad in [e.file for e in errors], errors


def test_a_prompt_or_answer_over_the_length_cap_is_refused() -> None:
    long = "x" * 20_001
    _, (error,) = parse_benchmarks({"f.jsonl": jsonl({"prompt": "ok", "expected": long})})
    assert (error.file, error.line, error.field) == ("f.jsonl", 1, "expected") and "20000" in str(error)
    rows = jsonl({"question": long, "answer": "a"})
    _, (error,) = parse_benchmarks({"t.yaml": VALID, "d.jsonl": rows})
    assert (error.file, error.field) == ("d.jsonl", "doc_to_text") and "20000" in str(error)


@pytest.mark.parametrize(
    ("name", "body", "siblings"),
    [
        ("t.yaml", VALID.replace(b"doc_to_target: answer", b'doc_to_target: "{{ 1/0 }}"'), {"d.jsonl": QA_ROWS}),
        ("t.yaml", VALID.replace(b"doc_to_target: answer", b"doc_to_target: \"{{ answer | regex_replace('(', '') }}\""),
         {"d.jsonl": QA_ROWS}),
        ("d.jsonl", QA_ROWS, {"t.yaml": VALID.replace(b"doc_to_target: answer", b'doc_to_target: "{{ 1/0 }}"')}),
        ("j.jsonl", jsonl({"prompt": "p", "expected": "e", "metric": ["x"]}), {}),
        ("deep.yaml", b"a: " + b"[" * 5000 + b"]" * 5000, {}),
    ],
)  # fmt: skip
def test_validate_raises_only_benchmark_errors(name: str, body: bytes, siblings: dict[str, bytes]) -> None:
    with pytest.raises(BenchmarkError):
        validate_benchmark_file(name, body, siblings)


def test_regex_replace_still_works_for_a_good_pattern() -> None:
    body = VALID.replace(b"doc_to_target: answer", b"doc_to_target: \"{{ answer | regex_replace(' +', '') }}\"")
    (bench,), errors = parse_benchmarks({"t.yaml": body, "d.jsonl": QA_ROWS})
    assert errors == [] and bench.items[0].expected == "5TB"


def test_the_canary_question_set_beside_the_benchmarks_is_not_a_benchmark() -> None:
    canary = b'{"question": "What is a good recipe for banana bread?", "expect": "abstain"}'
    faq = b'{"prompt": "Max object size:", "expected": "5 TB"}'
    benches, errors = parse_benchmarks({"canary.jsonl": canary, "faq.jsonl": faq})
    assert [b.name for b in benches] == ["faq"] and errors == []
    with pytest.raises(BenchmarkError, match="docllm canary set"):
        validate_benchmark_file("canary.jsonl", canary, {})

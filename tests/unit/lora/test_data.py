"""LoRA data: pairs from the answer-tuning builder in the serving template, split by document, written
as Bedrock's prompt/completion JSONL, and the same on every run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from docllm.answers.tuning import AnswerTuning, build_examples
from docllm.dataset.versions import SplitRecord
from docllm.lora.data import (
    INSTRUCTION_TEMPLATE,
    PROMPT_SHARES,
    build_lora_data,
    read_jsonl,
    split_documents,
    write_jsonl,
)
from docllm.lora.exceptions import LoraDataError
from docllm.serving.chat import ANSWER_MARKER, CONTEXT_MARKER, QUESTION_MARKER, render_answer_prompt


def document(i: int) -> str:
    return (
        f"# Configuring widget{i} logging\n\n"
        f"Widget{i} logging records every request made to the widget{i} endpoint.\n\n"
        f"A widget{i} is a container for objects stored in Amazon S3.\n\n"
        f"To enable logging on widget{i}, you set the status value to `Enabled{i}`."
    )


def records(n: int = 12) -> list[SplitRecord]:
    return [SplitRecord(chunk_id=f"w{i}", doc_key=f"s3/widget{i}.md", text=document(i)) for i in range(n)]


def build(n: int = 12, **kw: object) -> object:
    recs = records(n)
    args: dict[str, object] = {"context_length": 512, "validation_share": 0.25, "seed": 0, **kw}
    return build_lora_data(lambda: recs, AnswerTuning(distractors=0), **args)  # type: ignore[arg-type]


def test_pairs_are_the_builders_examples_in_the_serving_template() -> None:
    data = build()
    examples = build_examples(records, AnswerTuning(distractors=0), context_length=512)
    assert sorted((p.question, p.prompt + p.completion) for p in data.train + data.validation) == sorted(
        (e.question, e.text) for e in examples
    )
    for p in data.train + data.validation:
        assert p.prompt.startswith(CONTEXT_MARKER + "\n") and p.prompt.endswith(f"\n\n{ANSWER_MARKER}\n")
        context = p.prompt[len(CONTEXT_MARKER) + 1 : p.prompt.index(f"\n\n{QUESTION_MARKER}")]
        assert p.prompt == render_answer_prompt(context, p.question)  # INSTRUCTION_TEMPLATE, filled
        assert p.completion in context  # a verbatim span of the passage
    assert INSTRUCTION_TEMPLATE.startswith(CONTEXT_MARKER) and INSTRUCTION_TEMPLATE.endswith(ANSWER_MARKER + "\n")


def test_the_build_is_deterministic_down_to_the_bytes(tmp_path: Path) -> None:
    a, b = build(), build()
    assert a.train == b.train and a.validation == b.validation
    assert write_jsonl(tmp_path / "a.jsonl", a.train) == write_jsonl(tmp_path / "b.jsonl", b.train)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_the_split_is_by_document_and_follows_the_seed() -> None:
    data = build()
    train_docs = {p.doc_key for p in data.train}
    val_docs = {p.doc_key for p in data.validation}
    assert train_docs and val_docs and not train_docs & val_docs
    assert data.summary().validation_documents == len(val_docs)
    other = build(seed=1)
    assert {p.doc_key for p in other.validation} != val_docs


def test_a_document_keeps_its_side_as_the_corpus_grows() -> None:
    small = split_documents([f"d{i}" for i in range(30)], validation_share=0.2, seed=3)
    grown = split_documents([f"d{i}" for i in range(60)], validation_share=0.2, seed=3)
    assert all(grown[k] == side for k, side in small.items())
    assert 0.1 < Counter(grown.values())["validation"] / 60 < 0.3


def test_a_small_corpus_still_gets_both_sides() -> None:
    assert sorted(split_documents(["a", "b"], validation_share=0.01, seed=0).values()) == ["train", "validation"]
    assert sorted(split_documents(["a", "b"], validation_share=0.99, seed=0).values()) == ["train", "validation"]
    assert split_documents(["a"], validation_share=0.5, seed=0) in ({"a": "train"}, {"a": "validation"})
    assert set(split_documents(["a", "b", "c"], validation_share=0.0, seed=0).values()) == {"train"}


def test_a_pair_too_long_is_built_again_with_less_context_or_counted_unfit() -> None:
    # At a 200-token context every prompt holds its whole passage (344-397 characters); at 70% of
    # the budget the passage is cut to its sentences that share terms with the question.
    full = build(context_length=200)
    n = len(full.train + full.validation)
    assert min(len(p.prompt) for p in full.train + full.validation) > 300

    def fits_under(chars: int) -> object:
        return lambda p: len(p.prompt) < chars  # what a tokenizer with more tokens per byte would say

    shorter = build(context_length=200, fits=fits_under(300))
    assert len(shorter.train + shorter.validation) == n and shorter.unfit == 0
    assert {(p.chunk_id, p.question) for p in shorter.train} == {(p.chunk_id, p.question) for p in full.train}
    some = build(context_length=200, fits=fits_under(240))
    assert 0 < some.unfit < n and len(some.train + some.validation) + some.unfit == n
    nothing = build(context_length=200, fits=lambda p: False)
    assert nothing.train == nothing.validation == [] and nothing.unfit == n
    assert PROMPT_SHARES[0] == 1.0 and list(PROMPT_SHARES) == sorted(PROMPT_SHARES, reverse=True)


def test_the_files_hold_prompt_and_completion_only(tmp_path: Path) -> None:
    data = build()
    digest = write_jsonl(tmp_path / "train.jsonl", data.train)
    lines = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(data.train) and len(digest) == 64
    assert all(set(json.loads(line)) == {"prompt", "completion"} for line in lines)
    assert read_jsonl(tmp_path / "train.jsonl") == [p.line() for p in data.train]
    summary = data.summary({"data/train.jsonl": digest})
    assert summary.train_examples == len(data.train) and sum(summary.by_rule.values()) == len(
        data.train + data.validation
    )


def test_a_malformed_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": 1}\n', encoding="utf-8")
    with pytest.raises(LoraDataError, match="line 2"):
        read_jsonl(path)

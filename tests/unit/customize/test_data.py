"""Bedrock customization data: the LoRA path's pairs as prompt/completion JSONL, the dataset's text
as input JSONL, within Bedrock's record limits, the same on every run."""

from __future__ import annotations

import hashlib
import json

import pytest

from docllm.answers.prompt import estimate_tokens
from docllm.answers.tuning import AnswerTuning
from docllm.customize.data import (
    BedrockLimits,
    CustomizationDataError,
    build_continued_pretraining,
    build_fine_tuning,
    encode_jsonl,
    limits_for,
    split_text,
)
from docllm.dataset.versions import SplitRecord
from docllm.lora.data import build_lora_data
from docllm.serving.chat import ANSWER_MARKER


def document(i: int) -> str:
    return (
        f"# Configuring widget{i} logging\n\n"
        f"Widget{i} logging records every request made to the widget{i} endpoint.\n\n"
        f"A widget{i} is a container for objects stored in Amazon S3.\n\n"
        f"To enable logging on widget{i}, you set the status value to `Enabled{i}`."
    )


def records(n: int = 20) -> list[SplitRecord]:
    return [SplitRecord(chunk_id=f"w{i}", doc_key=f"s3/widget{i}.md", text=document(i)) for i in range(n)]


SETTINGS = AnswerTuning(distractors=0)


def test_fine_tuning_lines_are_the_lora_pairs_in_bedrocks_format() -> None:
    recs = records()
    data = build_fine_tuning(lambda: recs, SETTINGS, limits=limits_for("FINE_TUNING"))
    lora = build_lora_data(lambda: recs, SETTINGS, context_length=4096, validation_share=0.1, seed=0)
    assert data.train == [p.line() for p in lora.train]
    assert data.validation == [p.line() for p in lora.validation]
    for line in data.train + data.validation:
        assert set(line) == {"prompt", "completion"}
        assert line["prompt"].rstrip().endswith(ANSWER_MARKER)
        assert line["completion"] in line["prompt"]  # a verbatim span of the context
    s = data.summary
    assert (s.customization_type, s.template) == ("FINE_TUNING", "docllm-grounded-answer-v1")
    assert s.train_records == len(data.train) > 0 and s.validation_records == len(data.validation) > 0
    assert sum(s.by_rule.values()) == s.train_records + s.validation_records
    # Split by document: no document on both sides.
    train_docs = {p.doc_key for p in lora.train}
    assert train_docs.isdisjoint({p.doc_key for p in lora.validation})
    assert s.train_documents == len(train_docs)


def test_the_files_are_utf8_jsonl_and_their_digests_are_recorded() -> None:
    recs = [
        *records(),
        SplitRecord(chunk_id="u", doc_key="s3/u.md", text="# Größe\n\nA Eimer is a container für Objekte."),
    ]
    data = build_fine_tuning(lambda: recs, SETTINGS, limits=limits_for("FINE_TUNING"))
    files = data.files()
    assert set(files) == {"train.jsonl", "validation.jsonl"}
    for name, body in files.items():
        lines = body.decode("utf-8").splitlines()
        assert [json.loads(line) for line in lines] == (data.train if name == "train.jsonl" else data.validation)
        assert data.summary.files[name] == hashlib.sha256(body).hexdigest()
    assert "für" in files["train.jsonl"].decode() + files["validation.jsonl"].decode()


def test_the_same_dataset_gives_the_same_bytes() -> None:
    a = build_fine_tuning(records, SETTINGS, limits=limits_for("FINE_TUNING")).files()
    b = build_fine_tuning(records, SETTINGS, limits=limits_for("FINE_TUNING")).files()
    assert a == b


def test_record_quotas_are_kept_and_the_dropped_counted() -> None:
    recs = records(40)
    everything = build_fine_tuning(lambda: recs, SETTINGS, limits=limits_for("FINE_TUNING"))
    total = everything.summary.train_records + everything.summary.validation_records
    limits = BedrockLimits(max_records=10, max_validation_records=2, max_record_tokens=4096)
    capped = build_fine_tuning(lambda: recs, SETTINGS, limits=limits)
    assert len(capped.validation) == 2 and len(capped.train) == 8
    assert capped.summary.over_limit == total - 10
    # A cap keeps the builder's lowest ranks: a prefix of the uncapped lines.
    assert capped.train == everything.train[:8]


def test_every_pair_fits_a_record_of_the_base_model() -> None:
    long_doc = SplitRecord(
        chunk_id="big",
        doc_key="s3/big.md",
        text="# Big\n\n" + " ".join(f"A bucket{i} is a container for objects stored in Amazon S3." for i in range(40)),
    )
    limits = BedrockLimits(max_records=100, max_validation_records=0, max_record_tokens=100)
    data = build_fine_tuning(lambda: [*records(4), long_doc], SETTINGS, limits=limits)
    assert data.train and not data.validation
    for line in data.train:
        assert estimate_tokens(line["prompt"]) + estimate_tokens(line["completion"]) <= 100


def test_no_usable_pair_is_a_permanent_error_that_says_why() -> None:
    with pytest.raises(CustomizationDataError, match="no training pair"):
        build_fine_tuning(
            lambda: [SplitRecord(chunk_id="c", doc_key="s3/x.md", text="hello")],
            SETTINGS,
            limits=limits_for("FINE_TUNING"),
        )


def test_continued_pretraining_is_the_splits_text_as_input_records() -> None:
    train, val = records(6), records(2)
    data = build_continued_pretraining(lambda: train, lambda: val, limits=limits_for("CONTINUED_PRE_TRAINING"))
    assert data.train == [{"input": r.text} for r in train]  # file order kept
    assert data.validation == [{"input": r.text} for r in val]
    assert data.summary.customization_type == "CONTINUED_PRE_TRAINING" and data.summary.over_limit == 0
    assert set(data.files()) == {"train.jsonl", "validation.jsonl"}


def test_continued_pretraining_cuts_long_chunks_and_samples_within_the_quota() -> None:
    big = SplitRecord(chunk_id="big", doc_key="s3/big.md", text="\n\n".join(document(i) for i in range(30)))
    limits = BedrockLimits(max_records=5, max_validation_records=1, max_record_tokens=100)
    data = build_continued_pretraining(lambda: [big], lambda: records(3), limits=limits)
    assert len(data.validation) == 1 and len(data.train) == 4
    assert all(estimate_tokens(line["input"]) <= 100 for line in data.train + data.validation)
    pieces = split_text(big.text, 100)
    assert data.summary.over_limit == (len(pieces) - 4) + 2
    # Kept pieces are pieces of the text, in text order.
    positions = [big.text.index(line["input"]) for line in data.train]
    assert positions == sorted(positions)
    no_validation = build_continued_pretraining(lambda: [big], lambda: [], limits=limits)
    assert set(no_validation.files()) == {"train.jsonl"}


def test_split_text_loses_no_text_and_respects_the_budget() -> None:
    text = "\n\n".join(["short para"] * 5 + ["x" * 1000] + ["line one\nline two " * 30])
    pieces = split_text(text, 50)
    assert all(estimate_tokens(p) <= 50 for p in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert split_text("   ", 50) == []


def test_encode_jsonl_keeps_non_ascii() -> None:
    assert encode_jsonl([{"input": "é"}]) == '{"input": "é"}\n'.encode()

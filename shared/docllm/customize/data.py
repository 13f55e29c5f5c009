"""The JSONL files an Amazon Bedrock customization job reads, built from a dataset version's splits.

Formats (Bedrock's "Prepare your training datasets for fine-tuning and continued pre-training"),
one JSON object a line, UTF-8:

``FINE_TUNING``
    ``{"prompt": …, "completion": …}``: exactly the pairs of the LoRA path
    (:func:`docllm.lora.data.build_lora_data`, the answer-tuning builder): the prompt is the serving
    grounded-answer prompt, the completion a verbatim span of the context, the split by document.
    A custom model is therefore asked at serving time in the layout it learnt.
``CONTINUED_PRE_TRAINING``
    ``{"input": …}``: the dataset's own text, the training split's chunks for ``train.jsonl`` and
    the validation split's for ``validation.jsonl`` (the test split stays unseen, as for every
    other method); a chunk longer than a record may be is cut at paragraph, then line, then
    character boundaries.

Limits (:class:`BedrockLimits`). Bedrock refuses a job whose records are too long for the base
model or whose files hold more records than the account's quota ("Sum of training and validation
records" in the Bedrock quotas; default 10,000 for fine-tuning and 100,000 for continued
pre-training of the Titan Text models, at most 1,000 validation records), so the builder keeps
within them: a record whose estimated tokens exceed ``max_record_tokens`` is built again with a
smaller prompt share and dropped if it still does not fit (counted ``unfit``); beyond the record
quota, the lowest-ranked records are kept (the builder's hash ranking for pairs, a hash of the
chunk for text), so a cap drops a uniform sample, not the end of the alphabet (counted
``over_limit``). Token counts are :func:`docllm.answers.prompt.estimate_tokens`' conservative
estimate: the base model's tokenizer is Bedrock's, not ours.

Pure: records in, lines and a summary out; the service layer reads and writes the objects.

Example
-------
>>> from docllm.dataset.versions import SplitRecord
>>> recs = [SplitRecord(chunk_id=f"c{i}", doc_key=f"s3/d{i}.md",
...         text=f"# Page {i}\\n\\nA bucket{i} is a container for objects stored in Amazon S3.") for i in range(4)]
>>> data = build_fine_tuning(lambda: recs, AnswerTuning(distractors=0), limits=limits_for("FINE_TUNING"))
>>> sorted(data.train[0]), data.summary.train_records, data.summary.validation_records
(['completion', 'prompt'], 6, 2)
>>> cpt = build_continued_pretraining(lambda: recs, lambda: [], limits=limits_for("CONTINUED_PRE_TRAINING"))
>>> cpt.train[0]["input"][:8], cpt.summary.validation_records
('# Page 0', 0)
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docllm.answers.prompt import estimate_tokens
from docllm.answers.tuning import AnswerTuning
from docllm.dataset.versions import SplitRecord
from docllm.exceptions import PermanentError
from docllm.lora.data import TEMPLATE_NAME, PromptCompletion, build_lora_data

CustomizationType = Literal["FINE_TUNING", "CONTINUED_PRE_TRAINING"]
#: Share of documents held out as Bedrock's validation set (fine-tuning; split by document).
VALIDATION_SHARE = 0.1
#: Seed of the document split: the same dataset gives the same files on every run.
SEED = 0


class CustomizationDataError(PermanentError):
    """The dataset gives no record Bedrock would accept (too few documents, every record too long)."""


class BedrockLimits(BaseModel):
    """What one customization job may be given (module docstring: where the defaults come from)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_records: int = Field(ge=1, description="training plus validation records (the account quota)")
    max_validation_records: int = Field(ge=0, description="validation records at most")
    max_record_tokens: int = Field(ge=64, description="tokens of one record: prompt + completion, or input")


#: Bedrock's default quotas and the Titan Text models' record length (docs/customization.md, "Limits").
DEFAULT_LIMITS: dict[CustomizationType, BedrockLimits] = {
    "FINE_TUNING": BedrockLimits(max_records=10_000, max_validation_records=1_000, max_record_tokens=4_096),
    "CONTINUED_PRE_TRAINING": BedrockLimits(max_records=100_000, max_validation_records=1_000, max_record_tokens=4_096),
}


def limits_for(customization_type: CustomizationType) -> BedrockLimits:
    """The limits a job of this type is built for."""
    return DEFAULT_LIMITS[customization_type]


class CustomizationDataSummary(BaseModel):
    """What the files hold: recorded with the job, the model record and the manifest."""

    customization_type: CustomizationType
    template: str | None = Field(default=None, description="the prompt template (fine-tuning)")
    train_records: int
    validation_records: int
    train_documents: int
    validation_documents: int
    unfit: int = Field(default=0, description="records dropped: longer than max_record_tokens")
    over_limit: int = Field(default=0, description="records dropped: beyond the record quota")
    by_rule: dict[str, int] = Field(default_factory=dict, description="fine-tuning pairs per builder rule")
    limits: BedrockLimits
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256, once encoded")


@dataclass
class CustomizationData:
    """The lines of ``train.jsonl`` and ``validation.jsonl`` and their summary."""

    train: list[dict[str, str]]
    validation: list[dict[str, str]]
    summary: CustomizationDataSummary

    def files(self) -> dict[str, bytes]:
        """File name -> body; ``validation.jsonl`` only when there is validation data. Records the
        files' sha256 in the summary."""
        out = {"train.jsonl": encode_jsonl(self.train)}
        if self.validation:
            out["validation.jsonl"] = encode_jsonl(self.validation)
        self.summary.files = {name: hashlib.sha256(body).hexdigest() for name, body in out.items()}
        return out


def encode_jsonl(lines: Iterable[dict[str, str]]) -> bytes:
    """One JSON object a line, UTF-8, non-ASCII kept as is (Bedrock reads UTF-8)."""
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


# --------------------------------------------------------------------------- fine-tuning


def build_fine_tuning(
    source: Callable[[], Iterable[SplitRecord]],
    settings: AnswerTuning,
    *,
    limits: BedrockLimits,
    validation_share: float = VALIDATION_SHARE,
    seed: int = SEED,
) -> CustomizationData:
    """Prompt/completion pairs of the training split, within ``limits`` (module docstring).

    Parameters
    ----------
    source
        Returns the dataset's training records (``train.jsonl``) in file order; called more than once.
    settings
        The family's answer-tuning settings (rules, caps, distractors).
    """

    def fits(pair: PromptCompletion) -> bool:
        return estimate_tokens(pair.prompt) + estimate_tokens(pair.completion) <= limits.max_record_tokens

    built = build_lora_data(
        source,
        settings,
        context_length=limits.max_record_tokens,
        validation_share=validation_share,
        seed=seed,
        fits=fits,
    )
    # The builder's order is its hash ranking: a prefix is a uniform sample.
    validation = built.validation[: limits.max_validation_records]
    train = built.train[: max(0, limits.max_records - len(validation))]
    if not train:
        raise CustomizationDataError(
            f"no training pair for Bedrock fine-tuning: {len(built.train)} built, {built.unfit} too long for "
            f"{limits.max_record_tokens} tokens (the dataset needs documents the answer-tuning rules apply to)"
        )
    summary = built.summary()
    return CustomizationData(
        train=[p.line() for p in train],
        validation=[p.line() for p in validation],
        summary=CustomizationDataSummary(
            customization_type="FINE_TUNING",
            template=TEMPLATE_NAME,
            train_records=len(train),
            validation_records=len(validation),
            train_documents=len({p.doc_key for p in train}),
            validation_documents=len({p.doc_key for p in validation}),
            unfit=built.unfit,
            over_limit=len(built.train) - len(train) + len(built.validation) - len(validation),
            by_rule=summary.by_rule,
            limits=limits,
        ),
    )


# --------------------------------------------------------------------------- continued pre-training


def split_text(text: str, max_tokens: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_tokens`` (estimated), at paragraph boundaries where
    possible, then lines, then characters; pieces keep their order and lose no non-blank text.

    >>> split_text("one\\n\\ntwo", 64)
    ['one\\n\\ntwo']
    >>> [len(p) for p in split_text("a" * 400, 64)]
    [160, 160, 80]
    """
    text = text.strip()
    if not text:
        return []
    if estimate_tokens(text) <= max_tokens:
        return [text]
    for separator in ("\n\n", "\n"):
        parts = [p for p in text.split(separator) if p.strip()]
        if len(parts) > 1:
            return _pack(parts, separator, max_tokens)
    # One unbroken run: cut by bytes (estimate_tokens counts UTF-8 bytes), on character boundaries.
    budget = int(max_tokens * 2.5)
    pieces, current = [], ""
    for ch in text:
        if len((current + ch).encode("utf-8")) > budget:
            pieces.append(current)
            current = ""
        current += ch
    return [*pieces, current] if current else pieces


def _pack(parts: list[str], separator: str, max_tokens: int) -> list[str]:
    """Greedily join consecutive parts while the result fits; a part too long alone is cut further."""
    out: list[str] = []
    current: str | None = None
    for part in parts:
        if estimate_tokens(part) > max_tokens:
            if current is not None:
                out.append(current)
                current = None
            out.extend(split_text(part, max_tokens))
            continue
        joined = part if current is None else current + separator + part
        if estimate_tokens(joined) <= max_tokens:
            current = joined
        else:
            if current is not None:
                out.append(current)
            current = part
    if current is not None:
        out.append(current)
    return out


def _pieces(records: Iterable[SplitRecord], max_tokens: int) -> Iterator[tuple[str, int, str, str]]:
    """(rank key, file order, doc key, text) of every piece; the rank key is a hash of the piece's identity."""
    order = 0
    for r in records:
        for n, piece in enumerate(split_text(r.text, max_tokens)):
            key = hashlib.sha256(f"bedrock-cpt\x00{r.chunk_id}\x00{n}".encode()).hexdigest()
            yield key, order, r.doc_key, piece
            order += 1


def _sample(records: Iterable[SplitRecord], max_tokens: int, keep: int) -> tuple[list[tuple[str, str]], int]:
    """The ``keep`` lowest-ranked pieces in file order (memory: ``keep`` pieces), and how many were dropped."""
    total = 0

    def counted() -> Iterator[tuple[str, int, str, str]]:
        nonlocal total
        for piece in _pieces(records, max_tokens):
            total += 1
            yield piece

    kept = heapq.nsmallest(keep, counted(), key=lambda p: p[0]) if keep > 0 else []
    if keep <= 0:
        total = sum(1 for _ in _pieces(records, max_tokens))
    kept.sort(key=lambda p: p[1])
    return [(doc, text) for _, _, doc, text in kept], total - len(kept)


def build_continued_pretraining(
    train_source: Callable[[], Iterable[SplitRecord]],
    validation_source: Callable[[], Iterable[SplitRecord]],
    *,
    limits: BedrockLimits,
) -> CustomizationData:
    """``{"input": text}`` records of the training and validation splits, within ``limits``."""
    validation, val_dropped = _sample(validation_source(), limits.max_record_tokens, limits.max_validation_records)
    train, train_dropped = _sample(train_source(), limits.max_record_tokens, limits.max_records - len(validation))
    if not train:
        raise CustomizationDataError("no training text for Bedrock continued pre-training: the training split is empty")
    return CustomizationData(
        train=[{"input": text} for _, text in train],
        validation=[{"input": text} for _, text in validation],
        summary=CustomizationDataSummary(
            customization_type="CONTINUED_PRE_TRAINING",
            train_records=len(train),
            validation_records=len(validation),
            train_documents=len({doc for doc, _ in train}),
            validation_documents=len({doc for doc, _ in validation}),
            over_limit=train_dropped + val_dropped,
            limits=limits,
        ),
    )


__all__ = [
    "DEFAULT_LIMITS",
    "BedrockLimits",
    "CustomizationData",
    "CustomizationDataError",
    "CustomizationDataSummary",
    "CustomizationType",
    "build_continued_pretraining",
    "build_fine_tuning",
    "encode_jsonl",
    "limits_for",
    "split_text",
]

"""LoRA training data: prompt/completion pairs built by the answer-tuning builder, split by document.

Template. Every example is one :class:`docllm.answers.tuning.TuningExample`, so the prompt is the
**serving prompt** (:data:`INSTRUCTION_TEMPLATE`, the grounded-answer prompt of
:mod:`docllm.serving.chat` that ``POST /v1/ask`` sends): retrieved passages, numbered and headed,
under ``### Context:``, the question under ``### Question:``, then ``### Answer:`` and a newline. The
completion is the answer, a verbatim span of the passage (the builder's rules). The trainer appends
the tokenizer's end-of-sequence token to the completion, so the adapted model learns to stop where
the engine stops; the loss counts the completion's tokens only. An adapter trained on these pairs
is asked at serving time in exactly the layout it learnt::

    ### Context:
    [1] Amazon S3 User Guide > Versioning
    A bucket is a container for objects stored in Amazon S3.

    ### Question:
    What is a bucket?

    ### Answer:
    ⟨completion: A bucket is a container for objects stored in Amazon S3.⟩

Files. ``train.jsonl`` and ``validation.jsonl`` hold one ``{"prompt": …, "completion": …}`` object a
line: the format Amazon Bedrock's model customization reads, so the managed path can take the same
files. Where each example came from (rule, document, chunk) stays in the :class:`PromptCompletion`
objects and the counts of :class:`DataSummary`.

Split. By document, never by example: a document's examples are all on one side, so validation
measures answering from text the adapter did not train on. A document goes to validation when the
hash of ``(seed, doc_key)`` falls under ``validation_share``; this is stable as the corpus grows (a
new document never moves an old one across). When that leaves one side empty and there are two
documents or more, the document of lowest hash goes to validation (or highest to train).

Fit. The prompt budget is estimated from bytes; an example whose tokens overflow ``max_length`` is
built again with a smaller share of the budget (:data:`PROMPT_SHARES`, as the shards job does), and
dropped (counted as ``unfit``) when even the smallest does not fit. ``fits`` is the tokenizer's
verdict, injected: this module does no tokenization and no I/O beyond the JSONL helpers.

Example
-------
>>> from docllm.dataset.versions import SplitRecord
>>> recs = [SplitRecord(chunk_id=f"c{i}", doc_key=f"s3/d{i}.md",
...         text=f"# Page {i}\\n\\nA bucket{i} is a container for objects stored in Amazon S3.") for i in range(4)]
>>> data = build_lora_data(lambda: recs, AnswerTuning(distractors=0), context_length=256,
...                        validation_share=0.25, seed=0)
>>> len(data.train), len(data.validation), data.validation[0].doc_key
(4, 4, 's3/d3.md')
>>> data.train[0].line()["completion"]
'A bucket2 is a container for objects stored in Amazon S3.'
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from docllm.answers.tuning import AnswerTuning, RuleName, TuningExample, build_examples
from docllm.dataset.versions import SplitRecord
from docllm.lora.exceptions import LoraDataError
from docllm.serving.chat import ANSWER_PROMPT

#: The prompt of every example: the serving grounded-answer prompt (module docstring).
INSTRUCTION_TEMPLATE = ANSWER_PROMPT
#: Its name, recorded with the data: a new template is a new name.
TEMPLATE_NAME = "docllm-grounded-answer-v1"
#: Shares of the prompt budget tried in turn for an example that does not fit (the shards job's).
PROMPT_SHARES = (1.0, 0.7, 0.5, 0.35)

Split = Literal["train", "validation"]


class PromptCompletion(BaseModel):
    """One training pair, with where it came from."""

    prompt: str = Field(description="the serving prompt, ending with '### Answer:' and a newline")
    completion: str = Field(description="the answer: a verbatim span of the context")
    rule: RuleName
    question: str
    expected: str
    doc_key: str
    chunk_id: str

    @classmethod
    def from_example(cls, e: TuningExample) -> PromptCompletion:
        return cls(
            prompt=e.prompt,
            completion=e.answer,
            rule=e.rule,
            question=e.question,
            expected=e.expected,
            doc_key=e.doc_key,
            chunk_id=e.chunk_id,
        )

    def line(self) -> dict[str, str]:
        """The JSONL object: ``prompt`` and ``completion`` only (Bedrock's customization format)."""
        return {"prompt": self.prompt, "completion": self.completion}


class DataSummary(BaseModel):
    """What the data is made of, for ``result.json`` and the manifest."""

    template: str = TEMPLATE_NAME
    train_examples: int
    validation_examples: int
    train_documents: int
    validation_documents: int
    unfit: int = Field(description="examples dropped: too long for max_length at every prompt share")
    by_rule: dict[str, int]
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256, once written")


@dataclass
class LoraData:
    train: list[PromptCompletion]
    validation: list[PromptCompletion]
    unfit: int = 0

    def summary(self, files: dict[str, str] | None = None) -> DataSummary:
        everything = self.train + self.validation
        return DataSummary(
            train_examples=len(self.train),
            validation_examples=len(self.validation),
            train_documents=len({e.doc_key for e in self.train}),
            validation_documents=len({e.doc_key for e in self.validation}),
            unfit=self.unfit,
            by_rule=dict(sorted(Counter(e.rule for e in everything).items())),
            files=files or {},
        )


def _hash_unit(seed: int, doc_key: str) -> float:
    """A number in [0, 1) fixed by the seed and the document (same on every host and run)."""
    digest = hashlib.sha256(f"lora-split\x00{seed}\x00{doc_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_documents(doc_keys: Iterable[str], *, validation_share: float, seed: int) -> dict[str, Split]:
    """Each document's side (module docstring: the rule and its fallback for small corpora).

    >>> sides = split_documents([f"d{i}" for i in range(20)], validation_share=0.2, seed=0)
    >>> sorted(Counter(sides.values()).items())
    [('train', 17), ('validation', 3)]
    """
    keys = sorted(set(doc_keys))
    sides: dict[str, Split] = {k: "validation" if _hash_unit(seed, k) < validation_share else "train" for k in keys}
    if validation_share > 0 and len(keys) >= 2:
        ranked = sorted(keys, key=lambda k: _hash_unit(seed, k))
        if "validation" not in sides.values():
            sides[ranked[0]] = "validation"
        if "train" not in sides.values():
            sides[ranked[-1]] = "train"
    return sides


def build_lora_data(
    source: Callable[[], Iterable[SplitRecord]],
    settings: AnswerTuning,
    *,
    context_length: int,
    validation_share: float,
    seed: int,
    fits: Callable[[PromptCompletion], bool] | None = None,
    prompt_shares: Sequence[float] = PROMPT_SHARES,
) -> LoraData:
    """The prompt/completion pairs of a training split, split by document (module docstring).

    Parameters
    ----------
    source
        Returns the records to build from (the dataset's ``train.jsonl``, or its TF-IDF subset), in
        file order; called twice per prompt share tried.
    settings
        The builder's settings (rules, caps, distractors); ``share`` is not used here.
    context_length
        The model's ``max_length``: prompts are budgeted for it.
    fits
        Whether a pair fits once tokenized; None: every pair fits (one build).
    """
    chosen: dict[tuple[str, str], PromptCompletion] = {}
    order: dict[tuple[str, str], None] = {}  # the first build's rank order
    shares = list(prompt_shares) if fits is not None else [1.0]
    for share in shares:
        examples = build_examples(source, settings, context_length=context_length, prompt_share=share)
        for e in examples:
            key = (e.chunk_id, e.question)
            order.setdefault(key)
            if key not in chosen:
                pair = PromptCompletion.from_example(e)
                if fits is None or fits(pair):
                    chosen[key] = pair
        if len(chosen) == len(order):
            break
    pairs = [chosen[k] for k in order if k in chosen]
    sides = split_documents((p.doc_key for p in pairs), validation_share=validation_share, seed=seed)
    return LoraData(
        train=[p for p in pairs if sides[p.doc_key] == "train"],
        validation=[p for p in pairs if sides[p.doc_key] == "validation"],
        unfit=len(order) - len(chosen),
    )


def write_jsonl(path: Path, pairs: Iterable[PromptCompletion]) -> str:
    """Write one ``{"prompt", "completion"}`` object a line; return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps(p.line(), ensure_ascii=False) + "\n" for p in pairs).encode("utf-8")
    path.write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def read_jsonl(path: Path) -> list[dict[str, str]]:
    """The ``{"prompt", "completion"}`` objects of a file written by :func:`write_jsonl`."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise LoraDataError(f"{path.name} line {n}: not JSON: {e}") from e
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("prompt"), str)
            or not isinstance(obj.get("completion"), str)
        ):
            raise LoraDataError(f"{path.name} line {n}: needs string 'prompt' and 'completion'")
        out.append({"prompt": obj["prompt"], "completion": obj["completion"]})
    return out


__all__ = [
    "INSTRUCTION_TEMPLATE",
    "PROMPT_SHARES",
    "TEMPLATE_NAME",
    "DataSummary",
    "LoraData",
    "PromptCompletion",
    "build_lora_data",
    "read_jsonl",
    "split_documents",
    "write_jsonl",
]

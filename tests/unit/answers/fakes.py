"""Test doubles of the answer path: an inference engine that returns canned text, a tiny index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.ports.search import IndexedChunk
from docllm.search.sqlite_index import SqliteSearchIndex
from docllm.serving.exceptions import PromptTooLongError


class FakeEngine(InferenceEngine):
    """Answers every prompt with ``reply(prompt)``; records what it was asked.

    ``max_prompt_chars`` plays the engine's context check: a longer prompt raises PromptTooLongError.
    """

    def __init__(
        self,
        reply: str | Callable[[str], str] = "",
        *,
        model: str = "tiny-s3-v1",
        context_length: int = 1024,
        max_prompt_chars: int | None = None,
    ) -> None:
        self.reply = reply
        self.model = model
        self.context_length = context_length
        self.max_prompt_chars = max_prompt_chars
        self.prompts: list[str] = []
        self.params: list[GenerationParams] = []

    def info(self) -> ModelInfo:
        return ModelInfo(model=self.model, context_length=self.context_length)

    def _text(self, prompt: str, params: GenerationParams) -> str:
        if self.max_prompt_chars is not None and len(prompt) > self.max_prompt_chars:
            raise PromptTooLongError(f"{len(prompt)} characters do not fit")
        self.prompts.append(prompt)
        self.params.append(params)
        return self.reply(prompt) if callable(self.reply) else self.reply

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        text = self._text(prompt, params)
        return Generation(
            text=text, finish_reason="stop", prompt_tokens=len(prompt) // 4, completion_tokens=4, model=self.model
        )

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        text = self._text(prompt, params)
        for i in range(0, len(text), 7):
            yield text[i : i + 7]


VERSIONING = (
    "Versioning keeps multiple variants of an object in the same bucket. "
    "To enable versioning on a bucket, open the Amazon S3 console, choose the bucket, choose Properties, "
    "and under Bucket Versioning choose Edit and then Enable. "
    "You can also call PutBucketVersioning with the status Enabled."
)
OBJECT_SIZE = (
    "Individual Amazon S3 objects can range in size from a minimum of 0 bytes to a maximum of 5 TB. "
    "The largest object that can be uploaded in a single PUT is 5 GB."
)
LIFECYCLE = (
    "A lifecycle configuration is a set of rules that define actions that Amazon S3 applies to a group of objects. "
    "Transition actions move objects to another storage class."
)
ROLES = "An IAM role is an identity with permission policies that determine what the identity can do in AWS."


def small_index(root: Path) -> SqliteSearchIndex:
    """Four pages: S3 versioning (two sections), object size, lifecycle; IAM roles."""
    index = SqliteSearchIndex(root, durable=False)
    pages = {
        "s3/Versioning.md": ("Using versioning in S3 buckets", "s3", [["Enabling versioning"], ["How it works"]]),
        "s3/UploadingObjects.md": ("Uploading objects", "s3", [["Object size"]]),
        "s3/lifecycle.md": ("Managing your storage lifecycle", "s3", [["Lifecycle rules"]]),
        "iam/id_roles.md": ("IAM roles", "iam", [["Roles"]]),
    }
    texts = {
        "s3/Versioning.md": [VERSIONING, "Each object version has a version ID; deleting adds a delete marker."],
        "s3/UploadingObjects.md": [OBJECT_SIZE],
        "s3/lifecycle.md": [LIFECYCLE],
        "iam/id_roles.md": [ROLES],
    }
    for doc_key, (title, service, headings) in pages.items():
        chunks = [
            IndexedChunk(
                chunk_id=f"{doc_key}#{i}", doc_key=doc_key, service=service, title=title, heading_path=h, text=t
            )
            for i, (h, t) in enumerate(zip(headings, texts[doc_key], strict=True))
        ]
        index.replace_document(doc_key, f"v-{doc_key}", chunks)
    return index


LEAD = "Amazon S3 Transfer Acceleration is a bucket-level feature that speeds up transfers over long distances."


def lead_below_details_index(root: Path) -> SqliteSearchIndex:
    """One page whose lead section defines the feature and scores below three sections of details,
    none of whose lines names all of "s3 transfer acceler"."""
    details = [
        "Transfer Acceleration must be turned on for the bucket.\nAcceleration then applies to every transfer."
        "\nAmazon S3 keeps the setting with the bucket.",
        "Transfer Acceleration uses edge locations.\nEach transfer with acceleration may cost more."
        "\nThe S3 bill shows the charge apart.",
        "Check whether Transfer Acceleration helps.\nCompare transfer speeds with and without acceleration."
        "\nThe S3 console links to a comparison tool.",
    ]
    page = "s3/transfer-acceleration.md"
    title = "Transfer Acceleration"
    lead = f"{LEAD}\nIt works with any client, and most applications that already upload data need no change to use it."
    sections = [(["Overview"], lead)] + [([f"Transfer Acceleration details {i}"], t) for i, t in enumerate(details)]
    chunks = [
        IndexedChunk(chunk_id=f"{page}#{i}", doc_key=page, service="s3", title=title, heading_path=h, text=t)
        for i, (h, t) in enumerate(sections)
    ]
    index = SqliteSearchIndex(root, durable=False)
    index.replace_document(page, "v1", chunks)
    return index

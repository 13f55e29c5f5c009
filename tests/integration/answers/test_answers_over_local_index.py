"""The answer path over the embedded index built from real S3 and IAM guide pages (corpus-marked).

The engine is a stand-in that answers extractively: it copies, from the first passage of the prompt
it is given, the sentence sharing the most words with the question. That is what a model tuned to
answer from its context does at best, so the test checks the platform's part: retrieval, the prompt,
citation alignment and the abstention rules, over real pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docllm.answers.service import answer_question
from docllm.ingest.pipeline import Processed, process_document
from docllm.ports.search import IndexedChunk
from docllm.search.sqlite_index import SqliteSearchIndex
from tests.unit.answers.fakes import FakeEngine

pytestmark = pytest.mark.corpus

PAGES = {
    "s3": [
        "Versioning.md",
        "manage-versioning-examples.md",
        "versioning-workflows.md",
        "troubleshooting-versioning.md",
        "object-lifecycle-mgmt.md",
        "UsingBucket.md",
        "create-bucket-overview.md",
        "upload-objects.md",
        "DeletingObjects.md",
        "bucketnamingrules.md",
        "BucketRestrictions.md",
        "ServerSideEncryptionCustomerKeys.md",
    ],
    "iam": ["id_roles.md", "id_users.md", "access_policies.md", "id_credentials_mfa.md"],
}
_WORD = re.compile(r"[a-z0-9]+")


def extractive(prompt: str) -> str:
    """The sentence of the prompt's first passage sharing the most words with the question."""
    question = prompt.split("### Question:\n", 1)[1].split("\n\n### Answer:", 1)[0]
    context = prompt.split("### Context:\n", 1)[1].split("\n\n### Question:", 1)[0]
    first = re.split(r"\n\n\[2\] ", context, maxsplit=1)[0]
    passage = first.split("\n", 1)[1]
    wanted = set(_WORD.findall(question.lower()))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", passage) if len(s.split()) >= 4]
    return max(sentences, key=lambda s: len(wanted & set(_WORD.findall(s.lower()))), default="")


@pytest.fixture(scope="module")
def index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SqliteSearchIndex:
    idx = SqliteSearchIndex(tmp_path_factory.mktemp("answers-index"), durable=False)
    for service, names in PAGES.items():
        for name in names:
            path = corpus_dir / "awsdocs" / service / "doc_source" / name
            if not path.is_file():
                continue
            doc_key = f"{service}/{name}"
            out = process_document(path.read_bytes(), doc_key=doc_key, doc_version="1", service=service)
            assert isinstance(out, Processed), name
            chunks = [IndexedChunk.model_validate(c.model_dump()) for c in out.chunks]
            idx.replace_document(doc_key, "1", chunks)
    assert len(idx.document_versions()) >= 10
    return idx


@pytest.mark.parametrize(
    ("question", "pages"),
    [
        (
            "How do I enable versioning on a bucket?",
            {"s3/Versioning.md", "s3/manage-versioning-examples.md", "s3/versioning-workflows.md"},
        ),
        ("What are the rules for naming an S3 bucket?", {"s3/bucketnamingrules.md"}),
        ("How do I require MFA for IAM users?", {"iam/id_credentials_mfa.md"}),
    ],
)
def test_an_answerable_question_cites_the_page_that_answers(
    index: SqliteSearchIndex, question: str, pages: set[str]
) -> None:
    engine = FakeEngine(extractive, context_length=256)  # the tiny preset's context
    answer = answer_question(question, search=index, engine=engine, k=5)
    assert not answer.abstained, (answer.reason, answer.unsupported, engine.prompts)
    assert answer.citations and {c.doc_key for c in answer.citations} & pages
    assert all(c.quote and c.version_id == "1" for c in answer.citations)
    assert len(engine.prompts[0]) <= (256 - 64) * 4  # within the budget, however the tokens fall


@pytest.mark.parametrize(
    "question",
    [
        "How do I bake sourdough bread?",
        "What is the capital city of France?",
        "How do I configure Kubernetes pod autoscaling?",
    ],
)
def test_a_question_the_pages_do_not_cover_abstains_without_generating(index: SqliteSearchIndex, question: str) -> None:
    engine = FakeEngine(extractive)
    answer = answer_question(question, search=index, engine=engine)
    assert answer.abstained and answer.reason == "no_relevant_documents" and engine.prompts == []


def test_an_invented_limit_over_real_pages_abstains(index: SqliteSearchIndex) -> None:
    engine = FakeEngine("You can keep up to 7,777 versions of each object in a bucket.")
    answer = answer_question("How many versions of an object can a bucket keep?", search=index, engine=engine)
    assert answer.abstained and answer.reason == "unsupported_claims" and "7,777 versions" in answer.unsupported

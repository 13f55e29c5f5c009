"""Chunk vectors in the index file: written with their chunks, read instead of encoded, gone with them;
an encoder swapped between searches; the retriever gate's verdict and its validation questions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from docllm.dataset.versions import SplitRecord
from docllm.ports.search import IndexedChunk
from docllm.search.encoder import EncoderCard, EncoderSettings, FloatArray, TextEncoder
from docllm.search.evaluation import RetrievalReport
from docllm.search.retriever_gate import decide, validation_questions
from docllm.search.sqlite_index import DEFAULT_RANKING, HYBRID_RANKING, SqliteSearchIndex

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class _Letters:
    """One piece per letter: enough for an encoder whose vectors differ by text."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[LETTERS.index(c) for c in t if c in LETTERS] for t in texts]


class CountingEncoder(TextEncoder):
    def __init__(self, version: str | None, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        card = None
        if version is not None:
            card = EncoderCard(
                version=version,
                dataset_version="ds",
                tokenizer_version="tok",
                tokenizer_sha256="0" * 64,
                encoder_sha256="0" * 64,
                settings=EncoderSettings(dim=8),
                vocab_size=26,
                train_documents=1,
            )
        super().__init__(
            _Letters(), rng.normal(size=(26, 8)).astype(np.float32), np.zeros(26, dtype=np.float32), card=card
        )
        self.encoded: list[int] = []

    def encode(self, texts: Sequence[str]) -> FloatArray:
        self.encoded.append(len(texts))
        return super().encode(texts)


def _chunk(doc: str, text: str) -> IndexedChunk:
    return IndexedChunk(chunk_id=doc, doc_key=doc, service="svc", title=doc, heading_path=[], text=text)


DOCS = {"svc/a.md": "buckets hold objects", "svc/b.md": "queues hold messages", "svc/c.md": "alarms watch metrics"}


def _fill(index: SqliteSearchIndex) -> None:
    index.replace_documents((doc, "v1", [_chunk(doc, text)]) for doc, text in DOCS.items())


def test_a_writer_with_an_encoder_stores_each_chunk_vector_with_the_chunk(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, encoder=CountingEncoder("enc-1"), durable=False)
    _fill(index)
    assert index.stored_vectors("enc-1") == 3
    index.delete_document("svc/b.md")
    assert index.stored_vectors("enc-1") == 2
    index.close()


def test_a_new_reader_reads_stored_vectors_instead_of_encoding(tmp_path: Path) -> None:
    writer = SqliteSearchIndex(tmp_path, encoder=CountingEncoder("enc-1"), durable=False)
    _fill(writer)
    writer.close()
    encoder = CountingEncoder("enc-1")
    reader = SqliteSearchIndex(tmp_path, encoder=encoder, durable=False)
    assert [h.doc_key for h in reader.search("queues messages", k=1)] == ["svc/b.md"]
    assert encoder.encoded == [1]  # the query alone
    reader.close()


def test_a_reader_encodes_what_is_missing_once_and_stores_it_for_the_next(tmp_path: Path) -> None:
    plain = SqliteSearchIndex(tmp_path, durable=False)
    _fill(plain)
    plain.close()
    first = CountingEncoder("enc-1")
    reader = SqliteSearchIndex(tmp_path, encoder=first, durable=False)
    reader.warm_up()
    assert first.encoded == [3] and reader.stored_vectors("enc-1") == 3
    reader.close()
    second = CountingEncoder("enc-1")
    SqliteSearchIndex(tmp_path, encoder=second, durable=False).warm_up()
    assert second.encoded == []


def test_an_encoder_without_a_version_is_never_stored(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, encoder=CountingEncoder(None), durable=False)
    _fill(index)
    index.warm_up()
    assert index.prune_vectors([]) == 0
    index.close()


def test_stored_vectors_of_another_version_are_not_used(tmp_path: Path) -> None:
    _fill(SqliteSearchIndex(tmp_path, encoder=CountingEncoder("enc-1"), durable=False))
    other = CountingEncoder("enc-2", seed=1)
    index = SqliteSearchIndex(tmp_path, encoder=other, durable=False)
    index.warm_up()
    assert other.encoded == [3]
    assert index.prune_vectors(["enc-2"]) == 3 and index.stored_vectors("enc-1") == 0
    index.close()


def test_set_encoder_swaps_the_ranking_of_an_index_without_an_explicit_one(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, durable=False)
    _fill(index)
    assert index.ranking == DEFAULT_RANKING and index.search("buckets", k=1)
    index.set_encoder(CountingEncoder("enc-1"))
    assert index.ranking == HYBRID_RANKING
    assert [h.doc_key for h in index.search("buckets objects", k=1)] == ["svc/a.md"]
    index.set_encoder(None)
    assert index.ranking == DEFAULT_RANKING and index.encoder is None
    index.close()


def test_an_encoder_source_is_asked_before_each_search(tmp_path: Path) -> None:
    chosen: list[TextEncoder | None] = [None]
    index = SqliteSearchIndex(tmp_path, durable=False, encoder_source=lambda: chosen[0])
    _fill(index)
    index.search("buckets", k=1)
    assert index.encoder is None
    chosen[0] = CountingEncoder("enc-1")
    index.search("buckets", k=1)
    assert index.encoder is chosen[0] and index.stored_vectors("enc-1") == 3
    index.close()


def _report(recall: float, mrr: float, questions: int = 10) -> RetrievalReport:
    return RetrievalReport(
        questions=questions,
        recall_at_1=0.0,
        recall_at_5=0.0,
        recall_at_10=recall,
        mrr_at_10=mrr,
        ndcg_at_10=0.0,
        mean_latency_ms=0.0,
        details=[],
    )


@pytest.mark.parametrize(
    ("hybrid", "approved"),
    [((0.9, 0.7), True), ((0.95, 0.8), True), ((0.89, 0.9), False), ((0.99, 0.69), False)],
)
def test_the_gate_passes_only_when_neither_recall_nor_mrr_falls(hybrid: tuple[float, float], approved: bool) -> None:
    figures = decide(_report(0.9, 0.7), _report(*hybrid))
    assert figures.approved is approved
    assert ("worse" in figures.reason) is (not approved)


def test_the_gate_refuses_without_questions() -> None:
    figures = decide(_report(0.0, 0.0, questions=0), _report(0.0, 0.0, questions=0))
    assert not figures.approved and "no validation question" in figures.reason


def test_validation_questions_expect_their_own_page_and_do_not_repeat_the_training_forms() -> None:
    records = [
        SplitRecord(
            chunk_id=f"{i}",
            doc_key=f"svc/page{i}.md",
            text=f"# Topic {i}\n\n## Rotating keys {i}\n\nRotate the access keys of every user each ninety days. "
            "Old keys stop working once you deactivate them in the console.",
        )
        for i in range(5)
    ]
    questions = validation_questions(records)
    assert {q.type for q in questions} == {"heading", "sentence"}
    for q in questions:
        assert q.expected_doc_keys[0] in {r.doc_key for r in records}
        assert not q.question.startswith(("how do I ", "what is ", "can I ", "how to "))
    sentences = [q.question for q in questions if q.type == "sentence"]
    assert all("Rotating" not in s for s in sentences)
    assert validation_questions(records) == questions  # deterministic

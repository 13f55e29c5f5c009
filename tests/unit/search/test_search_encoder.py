"""The learned retrieval component: encoder inference, vector store, fusion, pairs, training, hybrid index."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from docllm.dataset.versions import SplitRecord
from docllm.ports.search import IndexedChunk
from docllm.search.encoder import (
    CARD_FILE,
    ENCODER_FILE,
    TOKENIZER_FILE,
    EncoderCard,
    EncoderSettings,
    TextEncoder,
    VectorStore,
    encoder_version,
    passage_text,
    write_encoder_arrays,
)
from docllm.search.encoder_train import (
    Pair,
    make_pairs,
    mine_hard_negatives,
    pair_counts,
    passages_from_records,
    train_encoder,
)
from docllm.search.exceptions import EncoderArtifactError
from docllm.search.fusion import reciprocal_rank_fusion
from docllm.search.ranking import Ranking
from docllm.search.sqlite_index import HYBRID_RANKING, SqliteSearchIndex

WORDS = ["bucket", "storage", "function", "runtime", "alarm", "metric", "queue", "question", "how"]


class WordTokenizer:
    """One id per known word (unknown words have no piece): a stand-in for SentencePiece."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[WORDS.index(w) for w in t.lower().replace("?", " ").split() if w in WORDS] for t in texts]


def synonym_encoder() -> TextEncoder:
    """'bucket' and 'storage' share a direction, as do 'function' and 'runtime', 'alarm' and 'metric'."""
    emb = np.zeros((len(WORDS), 4), dtype=np.float32)
    emb[[0, 1], 0] = 1.0
    emb[[2, 3], 1] = 1.0
    emb[[4, 5], 2] = 1.0
    emb[6, 3] = 1.0
    return TextEncoder(WordTokenizer(), emb, np.zeros(len(WORDS), dtype=np.float32), lowercase=True)


def chunk(cid: str, doc: str, text: str, service: str = "s3") -> IndexedChunk:
    return IndexedChunk(chunk_id=cid, doc_key=doc, service=service, title="", heading_path=[], text=text)


# -- encoder and vector store ---------------------------------------------------------------
def test_encoding_is_a_weighted_bag_of_pieces_normalised() -> None:
    enc = synonym_encoder()
    vecs = enc.encode(["bucket", "storage storage", "runtime", "nothing known"])
    assert np.allclose(np.linalg.norm(vecs[:3], axis=1), 1.0)
    assert float(vecs[0] @ vecs[1]) == pytest.approx(1.0)
    assert float(vecs[0] @ vecs[2]) == pytest.approx(0.0)
    assert not vecs[3].any()  # no piece: the zero vector, never NaN
    assert enc.encode([]).shape == (0, 4)


def test_learned_piece_weights_change_the_mix() -> None:
    emb = np.eye(len(WORDS), dtype=np.float32)
    weights = np.zeros(len(WORDS), dtype=np.float32)
    weights[WORDS.index("how")] = -20.0  # softplus(-20) ~ 0: the question word stops counting
    enc = TextEncoder(WordTokenizer(), emb, weights)
    how_bucket, bucket = enc.encode(["how bucket", "bucket"])
    assert float(how_bucket @ bucket) == pytest.approx(1.0, abs=1e-6)


def test_max_tokens_keeps_the_start_of_a_passage() -> None:
    enc = TextEncoder(
        WordTokenizer(), np.eye(len(WORDS), dtype=np.float32), np.zeros(len(WORDS), np.float32), max_tokens=1
    )
    assert enc.token_ids(["alarm bucket"]) == [[WORDS.index("alarm")]]


def test_mismatched_arrays_are_refused() -> None:
    with pytest.raises(EncoderArtifactError):
        TextEncoder(WordTokenizer(), np.zeros((3, 2), np.float32), np.zeros(4, np.float32))


def test_vector_store_ranks_filters_and_forgets() -> None:
    store = VectorStore(2)
    store.add([1, 2, 3], np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32), groups=[0, 0, 1])
    q = np.array([1.0, 0.0], dtype=np.float32)
    assert [s for s, _ in store.top_k(q, k=3)] == [1, 2, 3]
    assert [s for s, _ in store.top_k(q, k=1)] == [1]
    assert [s for s, _ in store.top_k(q, k=3, group=1)] == [3]
    store.remove(1)
    store.remove(99)  # unknown: ignored
    assert [s for s, _ in store.top_k(q, k=3)] == [2, 3]
    store.add([2], np.array([[0, 1]], dtype=np.float32), groups=[0])  # re-added slot replaces its vector
    assert len(store) == 2
    assert store.top_k(np.array([0.0, 1.0], dtype=np.float32), k=1)[0][0] == 2  # ties: the lower slot
    assert store.top_k(q, k=0) == []


def test_encoder_version_names_data_tokenizer_and_settings() -> None:
    base = encoder_version(EncoderSettings(), "ds-1", "tok-1")
    assert base == encoder_version(EncoderSettings(max_seconds=5), "ds-1", "tok-1")  # wall budget not versioned
    assert base != encoder_version(EncoderSettings(dim=64), "ds-1", "tok-1")
    assert base != encoder_version(EncoderSettings(), "ds-2", "tok-1")
    assert base != encoder_version(EncoderSettings(), "ds-1", "tok-2")
    assert base != encoder_version(EncoderSettings(hard_negatives=True), "ds-1", "tok-1")
    # a setting added later leaves the versions of encoders trained before it as they were
    assert "hard_negatives" not in EncoderSettings().versioned()


def test_passage_text_does_not_repeat_the_title() -> None:
    assert passage_text("S3", ["S3", "Naming"], "body") == "S3\nNaming\nbody"
    assert passage_text("S3", [], "body") == "S3\nbody"


# -- fusion ---------------------------------------------------------------------------------
def test_rrf_rewards_agreement_and_respects_weights() -> None:
    bm25 = [(1, 9.0), (2, 5.0), (4, 1.0)]
    dense = [(2, 0.9), (3, 0.8), (1, 0.1)]
    assert [s for s, _ in reciprocal_rank_fusion([bm25, dense])] == [2, 1, 3, 4]
    assert [s for s, _ in reciprocal_rank_fusion([bm25, dense], weights=[1.0, 1000.0])] == [2, 3, 1, 4]
    assert [s for s, _ in reciprocal_rank_fusion([bm25, dense], limit=2)] == [2, 1]
    assert reciprocal_rank_fusion([[], []]) == []
    # Equal fused scores: the lower slot first.
    assert [s for s, _ in reciprocal_rank_fusion([[(7, 1.0)], [(5, 1.0)]])] == [5, 7]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([bm25], weights=[1.0, 2.0])


# -- pairs and training ---------------------------------------------------------------------
def test_pairs_come_from_headings_question_forms_and_cloze() -> None:
    recs = [
        SplitRecord(chunk_id="1", doc_key="s3/a.md", text="# Buckets\n\nA bucket is a container for objects in S3."),
        SplitRecord(
            chunk_id="2",
            doc_key="s3/a.md",
            text="## Naming rules\n\nBucket names must be unique across all accounts. "
            "They must be between three and sixty three characters long.",
        ),
        SplitRecord(chunk_id="3", doc_key="s3/b.md", text="No heading here, only a body of text."),
    ]
    passages = passages_from_records(recs)
    assert [(p.title, p.headings) for p in passages] == [
        ("Buckets", ("Buckets",)),
        ("Buckets", ("Naming rules",)),
        ("b.md", ()),
    ]
    pairs = make_pairs(passages, EncoderSettings(cloze_per_chunk=1))
    assert pair_counts(pairs) == {"cloze": 1, "heading": 3, "question": 3}
    heading = next(p for p in pairs if p.kind == "heading" and p.query == "Naming rules")
    assert "Naming rules" not in heading.passage and "Bucket names" in heading.passage
    cloze = next(p for p in pairs if p.kind == "cloze")
    assert cloze.query not in cloze.passage
    assert make_pairs(passages, EncoderSettings(cloze_per_chunk=1)) == pairs  # deterministic


def test_training_pulls_paired_texts_together() -> None:
    pairs = [Pair("heading", WORDS[i], WORDS[(i + 1) % 8]) for i in range(8)] * 8
    settings = EncoderSettings(dim=16, epochs=30, batch_size=8, learning_rate=0.05, seed=1)
    trained = train_encoder(pairs, WordTokenizer(), settings, vocab_size=len(WORDS))
    assert trained.steps == 30 * 8 and trained.losses[-1] < trained.losses[0]
    enc = TextEncoder(WordTokenizer(), trained.embeddings, trained.weights)
    q, pos, neg = enc.encode([WORDS[0], WORDS[1], WORDS[5]])
    assert float(q @ pos) > float(q @ neg)


def test_hard_negatives_are_the_best_bm25_passage_of_another_page() -> None:
    pairs = [
        Pair("heading", "bucket storage", "bucket storage bucket", "a"),
        Pair("question", "how bucket storage", "bucket storage bucket", "a"),
        Pair("heading", "alarm metric", "alarm metric", "b"),
        Pair("heading", "bucket metric", "bucket storage metric", "c"),
        Pair("cloze", "bucket", "storage", "a"),
        Pair("heading", "queue", "queue", "d"),
    ]
    mined = mine_hard_negatives(pairs)
    # a's query lands on its own passage first; the next page is c's, which shares both words
    assert mined[:2] == ["bucket storage metric"] * 2
    assert mined[2] == "bucket storage metric"  # "metric" is in c's and no other page but b's own
    assert mined[3] in {"bucket storage bucket", "alarm metric"}
    assert mined[4] is None  # cloze pairs keep their in-batch negatives only
    assert mined[5] is None  # no other page holds "queue"


def test_training_with_hard_negatives_separates_a_page_from_its_near_twin() -> None:
    # Two pages share "bucket"; only the second word tells them apart. With hard negatives the loss
    # must push each query away from its twin's passage.
    pages = {"a": "bucket storage", "b": "bucket function", "c": "alarm metric", "d": "queue runtime"}
    pairs = [Pair("heading", text, text, page) for page, text in pages.items()] * 16
    settings = EncoderSettings(dim=16, epochs=20, batch_size=8, learning_rate=0.05, seed=1, hard_negatives=True)
    trained = train_encoder(pairs, WordTokenizer(), settings, vocab_size=len(WORDS))
    assert trained.steps == 20 * 8 and np.isfinite(trained.losses).all()  # masked columns never give NaN
    enc = TextEncoder(WordTokenizer(), trained.embeddings, trained.weights)
    q, own, twin = enc.encode(["bucket storage", "bucket storage", "bucket function"])
    assert float(q @ own) > float(q @ twin)


# -- artefacts ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from docllm.tokenizer.settings import TokenizerSettings
    from docllm.tokenizer.train import train_from_records
    from tests.unit.tokenizer.corpus import texts

    recs = [SplitRecord(chunk_id=str(i), doc_key=f"d{i}", text=t) for i, t in enumerate(texts(60, seed=3))]
    _, model = train_from_records(
        recs,
        TokenizerSettings(vocab_size=384, num_threads=1),
        tmp_path_factory.mktemp("tok"),
        split_bytes=sum(len(r.text) for r in recs),
    )
    return model


def write_artifacts(directory: Path, model: bytes, dim: int = 8) -> EncoderCard:
    from docllm.tokenizer.encode import SentencePieceTokenizer

    vocab = SentencePieceTokenizer(model).vocab_size
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    sha = write_encoder_arrays(
        directory / ENCODER_FILE, rng.normal(size=(vocab, dim)).astype(np.float32), np.zeros(vocab, np.float32)
    )
    (directory / TOKENIZER_FILE).write_bytes(model)
    settings = EncoderSettings(dim=dim)
    card = EncoderCard(
        version=encoder_version(settings, "ds", "tok"),
        dataset_version="ds",
        tokenizer_version="tok",
        tokenizer_sha256=hashlib.sha256(model).hexdigest(),
        encoder_sha256=sha,
        settings=settings,
        vocab_size=vocab,
        train_documents=1,
    )
    (directory / CARD_FILE).write_text(card.model_dump_json(), encoding="utf-8")
    return card


def test_an_encoder_loads_only_with_the_files_its_card_names(tmp_path: Path, sp_model: bytes) -> None:
    card = write_artifacts(tmp_path / "enc", sp_model)
    enc = TextEncoder.load(tmp_path / "enc")
    assert enc.version == card.version and enc.encode(["bucket policy"]).shape == (1, 8)
    (tmp_path / "enc" / TOKENIZER_FILE).write_bytes(sp_model + b"x")
    with pytest.raises(EncoderArtifactError, match="tokenizer_sha256"):
        TextEncoder.load(tmp_path / "enc")
    write_artifacts(tmp_path / "enc", sp_model)
    (tmp_path / "enc" / ENCODER_FILE).write_bytes(b"not numpy")
    with pytest.raises(EncoderArtifactError, match="encoder_sha256"):
        TextEncoder.load(tmp_path / "enc")
    (tmp_path / "enc" / CARD_FILE).unlink()
    with pytest.raises(EncoderArtifactError, match="lacks"):
        TextEncoder.load(tmp_path / "enc")


# -- the hybrid index -----------------------------------------------------------------------
def test_hybrid_index_finds_the_page_that_shares_no_word_with_the_question(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, encoder=synonym_encoder(), durable=False)
    assert index.ranking == HYBRID_RANKING
    index.replace_documents(
        [
            ("s3/store.md", "v1", [chunk("c1", "s3/store.md", "storage classes for objects")]),
            ("lambda/fn.md", "v1", [chunk("c2", "lambda/fn.md", "runtime settings", service="lambda")]),
            ("cw/alarm.md", "v1", [chunk("c3", "cw/alarm.md", "alarm on a metric", service="cw")]),
        ]
    )
    # "bucket" is in no chunk: BM25 alone finds nothing, the encoder finds storage.
    index.ranking = Ranking(question_forms=True)
    assert index.search("bucket") == []
    index.ranking = HYBRID_RANKING
    assert [h.doc_key for h in index.search("bucket", k=1)] == ["s3/store.md"]
    assert [h.doc_key for h in index.search("function", k=3, service="lambda")] == ["lambda/fn.md"]
    assert index.search("function", k=3, service="s3")[0].doc_key == "s3/store.md"  # filtered to s3
    index.close()


def test_hybrid_vectors_follow_replacements_and_deletes(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, encoder=synonym_encoder(), durable=False)
    index.replace_document("s3/a.md", "v1", [chunk("c1", "s3/a.md", "storage limits")])
    assert [h.doc_key for h in index.search("bucket")] == ["s3/a.md"]
    index.replace_document("s3/b.md", "v1", [chunk("c2", "s3/b.md", "metric quotas")])
    index.replace_document("s3/a.md", "v2", [chunk("c1", "s3/a.md", "alarm limits")])
    index.replace_document("s3/b.md", "v2", [chunk("c2", "s3/b.md", "storage quotas")])
    assert index.search("bucket", k=1)[0].doc_key == "s3/b.md"  # a.md's old vector is gone
    index.delete_document("s3/b.md")
    assert all(h.doc_key != "s3/b.md" for h in index.search("bucket", k=5))
    # A second process opening the same file encodes what is there.
    other = SqliteSearchIndex(tmp_path, encoder=synonym_encoder())
    index.replace_document("s3/c.md", "v1", [chunk("c3", "s3/c.md", "storage tiers")])
    assert other.search("bucket", k=1)[0].doc_key == "s3/c.md"
    other.close()
    index.close()


def test_without_an_encoder_the_dense_weight_is_ignored(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, ranking=Ranking(dense_weight=1.0), durable=False)
    index.replace_document("s3/a.md", "v1", [chunk("c1", "s3/a.md", "storage limits")])
    assert [h.doc_key for h in index.search("storage")] == ["s3/a.md"]
    assert index.search("bucket") == []
    index.close()


def test_identifier_queries_are_ranked_by_bm25_alone_unless_told(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, encoder=synonym_encoder(), durable=False)
    index.replace_document("s3/a.md", "v1", [chunk("c1", "s3/a.md", "storage limits")])
    assert index.search("bucket --force") == []  # identifier-shaped: BM25 only, which finds nothing
    index.ranking = Ranking(question_forms=True, dense_weight=0.25, dense_skips_identifiers=False)
    assert [h.doc_key for h in index.search("bucket --force")] == ["s3/a.md"]
    assert index.search("nothing known here") == []  # no piece known: the encoder proposes nothing
    index.close()

"""Citations come from aligning the answer's sentences with the chunks, not from the model's [n]."""

from __future__ import annotations

from docllm.answers.cite import QUOTE_MAX_CHARS, align_sentence, cite, quote_around, split_sentences
from docllm.answers.retrieve import RetrievedChunk
from tests.unit.answers.fakes import LIFECYCLE, OBJECT_SIZE, VERSIONING


def chunk(chunk_id: str, text: str, doc_key: str = "s3/x.md") -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=chunk_id,
        doc_key=doc_key,
        version_id="v1",
        service="s3",
        title="T",
        heading_path=["H"],
        text=text,
        score=2.0,
    )


CHUNKS = [chunk("life#0", LIFECYCLE), chunk("ver#0", VERSIONING), chunk("size#0", OBJECT_SIZE)]


def test_a_copied_sentence_cites_the_chunk_it_came_from_with_a_quote() -> None:
    citations, unsupported = cite("Under Bucket Versioning choose Edit and then Enable.", CHUNKS)
    assert [c.chunk_id for c in citations] == ["ver#0"] and unsupported == []
    assert "under Bucket Versioning choose Edit and then Enable" in citations[0].quote
    assert citations[0].version_id == "v1" and citations[0].heading_path == ["H"]


def test_each_sentence_cites_its_own_chunk_in_answer_order() -> None:
    answer = "Objects can range in size from 0 bytes to 5 TB. Transition actions move objects to another storage class."
    citations, _ = cite(answer, CHUNKS)
    assert [(c.chunk_id, c.sentences) for c in citations] == [("size#0", [0]), ("life#0", [1])]


def test_a_paraphrase_that_reuses_the_chunk_words_is_supported() -> None:
    found = align_sentence("Enable versioning from the bucket Properties in the console.", [VERSIONING])
    assert found is not None and found[0] == 0


def test_a_sentence_no_chunk_supports_is_reported() -> None:
    citations, unsupported = cite("Buckets are painted blue on Tuesdays.", CHUNKS)
    assert citations == [] and unsupported == ["Buckets are painted blue on Tuesdays."]


def test_a_sentence_without_content_words_needs_no_source() -> None:
    citations, unsupported = cite("Yes, it is.", CHUNKS)
    assert citations == [] and unsupported == []


def test_two_sentences_from_one_chunk_make_one_citation() -> None:
    answer = (
        "Versioning keeps multiple variants of an object in the same bucket. You can also call PutBucketVersioning."
    )
    citations, _ = cite(answer, CHUNKS)
    assert [(c.chunk_id, c.sentences) for c in citations] == [("ver#0", [0, 1])]


def test_sentences_split_at_ends_not_inside_names_or_numbers() -> None:
    assert split_sentences("Use s3.amazonaws.com for 3.5 GB. Then stop!\nNext") == [
        "Use s3.amazonaws.com for 3.5 GB.",
        "Then stop!",
        "Next",
    ]


def test_a_quote_is_bounded_and_keeps_whole_words() -> None:
    long = "word " * 200 + "needle phrase here " + "word " * 200
    start = long.index("needle")
    quote = quote_around(long, start, start + len("needle phrase here"))
    assert "needle phrase here" in quote and len(quote) <= QUOTE_MAX_CHARS
    assert all(w in ("word", "needle", "phrase", "here") for w in quote.split())

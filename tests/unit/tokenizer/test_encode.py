from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from docllm.dataset.versions import SplitRecord
from docllm.tokenizer.encode import SentencePieceTokenizer, encode_documents
from tests.unit.tokenizer.corpus import SPECIAL, texts

TEXT = st.lists(st.sampled_from([*"ab \t\n}{", "é", "🚀", "    ", "bucket", "\n\n"]), max_size=30).map("".join)
LINES = st.lists(TEXT, min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(LINES)
def test_encoding_line_by_line_gives_the_ids_of_whole_texts(bpe_model: Path, batch: list[str]) -> None:
    tok = SentencePieceTokenizer.from_file(bpe_model)
    assert tok.encode_by_line(batch) == tok.encode(batch)


def test_repeated_lines_across_chunks_encode_like_unique_ones(bpe_model: Path) -> None:
    tok = SentencePieceTokenizer.from_file(bpe_model)
    batch = [*texts(20, seed=5), *SPECIAL, "\n\n\n", "", "x\n", "\nx", "```\ncode\n```", "```\ncode\n```"]
    assert tok.encode_by_line(batch) == tok.encode(batch)


def test_sharding_path_matches_sentencepiece_on_real_aws_guides(corpus_dir: Path, tmp_path: Path) -> None:
    from tests.unit.tokenizer.conftest import train_on_texts

    files = sorted((corpus_dir / "awsdocs").glob("*/doc_source/*.md"))[::25]
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    tok = SentencePieceTokenizer.from_file(train_on_texts(tmp_path, docs[::2], vocab_size=1024))
    assert tok.newline_id is not None  # the exact line-by-line path is the one under test
    records = [SplitRecord(chunk_id=f"{i}#0", doc_key=str(i), text=t) for i, t in enumerate(docs)]
    encoded = list(encode_documents(tok, records, batch_chunks=16))
    assert [d.ids.tolist() for d in encoded] == tok.encode(docs)


def test_a_tokenizer_whose_pieces_span_newlines_falls_back_to_whole_text_encoding(tmp_path: Path) -> None:
    import io

    import sentencepiece as spm

    lines = [t.replace("\n", " ")[:2000] for t in texts(60)]
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    w = io.BytesIO()
    # No newline symbol at all: "\n" is unknown, so line-by-line would not be provably exact.
    spm.SentencePieceTrainer.train(input=str(tmp_path / "s.txt"), model_writer=w, vocab_size=200, minloglevel=2)
    tok = SentencePieceTokenizer(w.getvalue())
    assert tok.newline_id is None
    assert tok.encode_by_line(["a\nb", "c"]) == tok.encode(["a\nb", "c"])

"""End to end on the local platform: the real template, handlers and CLI over the shared corpus.

upload a guide → every file processed or quarantined → searchable → re-upload changes nothing →
delete removes chunks and hits → malformed PDFs and site boilerplate pages end with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from docllm.cli.main import main
from docllm.exceptions import NotFoundError
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=True)
    rt.start()
    yield rt
    rt.stop()


def cli(runtime: LocalRuntime, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    capsys.readouterr()
    code = main(["--data-dir", str(runtime.data_dir), *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_a_whole_guide_is_ingested_searchable_and_idempotent(runtime, corpus_dir, capsys):
    guide = corpus_dir / "awsdocs" / "s3"
    files = sorted(p for p in guide.rglob("*") if p.is_file() and not p.name.startswith("."))
    code, summary = cli(runtime, capsys, "ingest", str(guide), "--service", "s3")
    assert code == 0, summary
    assert summary["files"] == summary["uploaded"] == len(files)
    assert summary["pending"] == []
    assert summary["processed"] + summary["duplicate"] + len(summary["quarantined"]) == len(files)

    code, docs = cli(runtime, capsys, "docs")
    expected = {f"s3/{p.relative_to(guide).as_posix()}" for p in files}
    assert {d["doc_key"] for d in docs} == expected
    assert all(d["status"] in ("processed", "duplicate", "quarantined") for d in docs)
    assert all(d["reason"] for d in docs if d["status"] == "quarantined")
    chunks_before = sum(d["chunk_count"] for d in docs)
    # `ingest` waits for the documents; their consumers (index, pipelines) may still be at work.
    assert runtime.wait_idle(120)
    events_before = runtime.platform.event_log.last(1)[0].seq

    code, again = cli(runtime, capsys, "ingest", str(guide), "--service", "s3")
    assert (again["uploaded"], again["unchanged"]) == (0, len(files))
    assert runtime.wait_idle(60)
    assert runtime.platform.event_log.since(events_before) == []
    code, docs = cli(runtime, capsys, "docs")
    assert sum(d["chunk_count"] for d in docs) == chunks_before

    code, result = cli(runtime, capsys, "search", "enable versioning on a bucket", "--k", "5", "--service", "s3")
    assert code == 0 and result["hits"] and all(h["doc_key"] in expected for h in result["hits"])


@pytest.mark.slow
def test_deleting_a_document_removes_its_chunks_and_its_hits(runtime, capsys, tmp_path):
    doc = tmp_path / "zebra.md"
    doc.write_text("# Zebra buckets\n\n## Striping\n\nQuagga-striped buckets hold zebrafish objects.\n")
    code, _ = cli(runtime, capsys, "ingest", str(doc), "--service", "zoo")
    assert code == 0
    code, result = cli(runtime, capsys, "search", "quagga zebrafish")
    assert [h["doc_key"] for h in result["hits"]][:1] == ["zoo/zebra.md"]

    runtime.platform.objects.delete(runtime.platform.settings.raw_bucket, "zoo/zebra.md")
    assert runtime.wait_idle(30)
    code, docs = cli(runtime, capsys, "docs", "--prefix", "zoo/")
    assert [(d["doc_key"], d["status"], d["chunk_count"]) for d in docs] == [("zoo/zebra.md", "removed", 0)]
    with pytest.raises(NotFoundError):
        runtime.platform.objects.get(runtime.platform.settings.processed_bucket, "chunks/zoo/zebra.md.jsonl")
    code, result = cli(runtime, capsys, "search", "quagga zebrafish")
    assert all(h["doc_key"] != "zoo/zebra.md" for h in result["hits"])


@pytest.mark.slow
def test_malformed_pdfs_are_quarantined_or_recovered_with_a_reason(runtime, corpus_dir, capsys):
    folder = corpus_dir / "pdf" / "malformed"
    _code, summary = cli(runtime, capsys, "ingest", str(folder), "--service", "broken")
    assert summary["pending"] == []
    _, docs = cli(runtime, capsys, "docs", "--prefix", "broken/")
    assert len(docs) == len([p for p in folder.iterdir() if p.is_file()])
    for d in docs:
        assert d["status"] in ("processed", "quarantined")
        if d["status"] == "quarantined":
            assert d["reason_code"] and d["reason"]


@pytest.mark.slow
def test_site_pages_keep_content_and_error_pages_are_quarantined(runtime, corpus_dir, capsys):
    site = corpus_dir / "html" / "aws-eks-best-practices-guide"
    _code, summary = cli(runtime, capsys, "ingest", str(site), "--service", "eks")
    assert summary["pending"] == []
    _, docs = cli(runtime, capsys, "docs", "--prefix", "eks/")
    by_key = {d["doc_key"]: d for d in docs}
    assert by_key["eks/404.html"]["status"] == "quarantined"
    assert by_key["eks/karpenter/index.html"]["status"] == "processed"
    assert by_key["eks/ko/karpenter/index.html"]["language"] == "ko"
    chunks = runtime.platform.objects.get(
        runtime.platform.settings.processed_bucket, "chunks/eks/karpenter/index.html.jsonl"
    )
    texts = [json.loads(line)["text"] for line in chunks.decode().splitlines()]
    assert texts and not any("Edit this page" in t for t in texts)

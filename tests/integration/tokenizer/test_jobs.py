"""The tokenizer and shards jobs under the SageMaker container contract, end to end on a tiny corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docllm.dataset.shards import PackedSequenceReader, load_index
from docllm.dataset.shards_output import ShardsResult, finalize_shards_output, load_token_counts
from docllm.dataset.versions import DatasetManifest, build_dataset
from docllm.jobs import shards_job
from docllm.tokenizer.encode import CHUNK_SEPARATOR, SentencePieceTokenizer
from tests.unit.dataset.fakes import DictObjects, DictState, add_document
from tests.unit.tokenizer.corpus import texts


def _dataset(tmp: Path) -> tuple[DatasetManifest, Path, DictObjects]:
    state, objects = DictState(), DictObjects()
    body = texts(80, seed=1)
    for i in range(40):
        add_document(state, objects, f"svc/doc{i:02d}.md", [body[2 * i], body[2 * i + 1]])
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    channel = tmp / "input" / "data" / "dataset"
    objects.download_prefix(f"s3://art/datasets/{manifest.version}/", channel)
    return manifest, channel, objects


def _run(prefix: Path, module: str, hp: dict[str, str], channels: list[str]) -> subprocess.CompletedProcess[str]:
    (prefix / "input" / "config").mkdir(parents=True, exist_ok=True)
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    env = {**os.environ, "DOCLLM_SM_PREFIX": str(prefix), "SM_CHANNELS": json.dumps(channels)}
    return subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetManifest, Path, Path]:
    prefix = tmp_path_factory.mktemp("job")
    manifest, channel, _ = _dataset(prefix)
    proc = _run(prefix, "docllm.jobs.tokenizer_job", {"vocab_size": "384", "num_threads": "1"}, ["dataset"])
    assert proc.returncode == 0, proc.stderr
    return manifest, channel, prefix / "model"


def test_tokenizer_job_leaves_every_artefact_and_a_result(
    trained: tuple[DatasetManifest, Path, Path],
) -> None:
    manifest, _, model_dir = trained
    names = {p.name for p in model_dir.iterdir()}
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "vocab.json", "card.json"} <= names
    result = json.loads((model_dir / "result.json").read_text())
    card = json.loads((model_dir / "card.json").read_text())
    assert result["dataset_version"] == manifest.version == card["dataset_version"]
    assert result["vocab_size"] == 384 and result["eos_id"] == 2
    assert card["version"] == result["version"] and card["model_sha256"] == result["model_sha256"]


def test_bad_hyperparameter_fails_the_job_with_a_reason(tmp_path: Path) -> None:
    _dataset(tmp_path)
    proc = _run(tmp_path, "docllm.jobs.tokenizer_job", {"vocab_size": "-1"}, ["dataset"])
    assert proc.returncode == 1
    reason = (tmp_path / "output" / "failure").read_text()
    assert reason.startswith("ClientError") and "vocab_size" in reason


def test_shards_job_shards_decode_back_to_the_dataset_text(
    trained: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    manifest, channel, model_dir = trained
    prefix = tmp_path / "tk"
    (prefix / "input" / "data").mkdir(parents=True)
    (prefix / "input" / "data" / "dataset").symlink_to(channel)
    (prefix / "input" / "data" / "tokenizer").symlink_to(model_dir)
    proc = _run(prefix, "docllm.jobs.shards_job", {"shard_tokens": "1000"}, ["dataset", "tokenizer"])
    assert proc.returncode == 0, proc.stderr
    out = prefix / "model"
    result = ShardsResult.model_validate_json((out / "result.json").read_text())
    tok = SentencePieceTokenizer.from_file(model_dir / "tokenizer.model")
    counts = json.loads((out / "counts" / "part-000.json").read_text())
    for split in ("train", "validation", "test"):
        docs = manifest.split_documents(split)
        assert result.documents[split] == len(docs)
        if not docs:
            continue
        index = load_index(out / split)
        assert index.dtype == "uint16" and result.tokens[split] == index.total_tokens
        stream = np.concatenate([np.fromfile(out / split / s.name, dtype="<u2") for s in index.shards])
        rows = [json.loads(x) for x in (channel / f"{split}.jsonl").read_text().splitlines()]
        for doc, start, length in zip(docs, index.doc_starts, index.doc_lengths(), strict=True):
            text = CHUNK_SEPARATOR.join(r["text"] for r in rows if r["doc_key"] == doc.doc_key)
            ids = stream[start : start + length]
            assert ids[-1] == tok.eos_id
            assert tok.decode(ids[:-1]) == text
            assert counts["documents"][doc.doc_key] == length - 1
    assert sum(counts["chunks"].values()) <= sum(counts["documents"].values())
    reader = PackedSequenceReader(out / "train", block_size=32, seed=0)
    assert next(iter(reader)).shape == (33,)


def test_hosts_split_documents_and_their_parts_merge(
    trained: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    manifest, channel, model_dir = trained
    out = tmp_path / "out"
    results = [shards_job.build_shards(channel, model_dir, out, part=k, parts=2, shard_tokens=500)[0] for k in (0, 1)]
    objects = DictObjects()
    for p in out.rglob("*"):
        if p.is_file():
            objects.put("art", f"shards/x/{p.relative_to(out).as_posix()}", p.read_bytes())
    merged = finalize_shards_output(objects, "s3://art/shards/x/", expected_parts=2)
    assert merged.parts == 2
    assert merged.documents["train"] == len(manifest.split_documents("train"))
    assert merged.tokens["train"] == sum(r.tokens["train"] for r in results)
    counts = load_token_counts(objects, "s3://art/shards/x/")
    assert set(counts.documents) == {d.doc_key for d in manifest.documents}
    reader = PackedSequenceReader(out / "train", block_size=16, shuffle=False)
    assert len(reader) == (merged.tokens["train"] - 1) // 16


def test_main_publishes_result_with_the_artefacts(
    trained: tuple[DatasetManifest, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docllm.jobs import contract
    from docllm.jobs.tokenizer_job import publish_with_result

    published: list[tuple[list[str], str]] = []

    def fake_publish(src: Path, uri: str) -> list[str]:
        published.append((sorted(p.name for p in Path(src).iterdir()), uri))
        return []

    monkeypatch.setattr(contract, "publish_directory", fake_publish)
    (tmp_path / "tokenizer.model").write_bytes(b"x")
    publish_with_result(tmp_path, '{"version": "tok-1"}', "s3://art/tokenizers/tok-1/")
    assert published == [(["result.json", "tokenizer.model"], "s3://art/tokenizers/tok-1/")]

"""The retriever job under the SageMaker container contract, on a tiny dataset, then its encoder in an index.

Also the issue's provenance rule: every model file the index loads is traceable to the job's card
(dataset version, tokenizer version, sha256 of each file); no other weights are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docllm.dataset.versions import DatasetManifest, build_dataset
from docllm.ports.search import IndexedChunk
from docllm.search.encoder import CARD_FILE, ENCODER_FILE, TOKENIZER_FILE, EncoderCard, TextEncoder
from docllm.search.retriever_gate import GateFigures
from docllm.search.sqlite_index import HYBRID_RANKING, SqliteSearchIndex
from tests.unit.dataset.fakes import DictObjects, DictState, add_document

TOPICS = {
    "bucket": "A bucket stores objects. Bucket names are unique. Objects in a bucket have keys and versions.",
    "function": "A function runs code on demand. The function runtime is chosen at creation. Handlers run code.",
    "alarm": "An alarm watches a metric. The alarm changes state when the metric crosses a threshold value.",
    "queue": "A queue holds messages. Consumers poll the queue for messages and delete them after processing.",
}


def _dataset(prefix: Path) -> tuple[DatasetManifest, Path]:
    state, objects = DictState(), DictObjects()
    for i in range(48):
        topic = list(TOPICS)[i % 4]
        add_document(
            state,
            objects,
            f"svc/{topic}{i:02d}.md",
            [f"# About the {topic} {i}\n\n{TOPICS[topic]}", f"## More on {topic}s\n\n{TOPICS[topic]} Read more."],
        )
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    channel = prefix / "input" / "data" / "dataset"
    objects.download_prefix(f"s3://art/datasets/{manifest.version}/", channel)
    return manifest, channel


def _run(prefix: Path, module: str, hp: dict[str, str], channels: list[str]) -> subprocess.CompletedProcess[str]:
    (prefix / "input" / "config").mkdir(parents=True, exist_ok=True)
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    env = {**os.environ, "DOCLLM_SM_PREFIX": str(prefix), "SM_CHANNELS": json.dumps(channels)}
    return subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=240, check=False
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetManifest, Path, Path]:
    tok_prefix = tmp_path_factory.mktemp("tok")
    manifest, channel = _dataset(tok_prefix)
    proc = _run(tok_prefix, "docllm.jobs.tokenizer_job", {"vocab_size": "384", "num_threads": "1"}, ["dataset"])
    assert proc.returncode == 0, proc.stderr
    prefix = tmp_path_factory.mktemp("retriever")
    (prefix / "input" / "data").mkdir(parents=True)
    (prefix / "input" / "data" / "dataset").symlink_to(channel)
    (prefix / "input" / "data" / "tokenizer").symlink_to(tok_prefix / "model")
    hp = {"dim": "16", "epochs": "3", "batch_size": "16", "learning_rate": "0.02"}
    proc = _run(prefix, "docllm.jobs.retriever_job", hp, ["dataset", "tokenizer"])
    assert proc.returncode == 0, proc.stderr
    return manifest, tok_prefix / "model", prefix / "model"


@pytest.mark.slow
def test_the_job_leaves_an_encoder_traceable_to_its_dataset_and_tokenizer(
    trained: tuple[DatasetManifest, Path, Path],
) -> None:
    manifest, tok_dir, model_dir = trained
    assert {p.name for p in model_dir.iterdir()} == {
        ENCODER_FILE,
        TOKENIZER_FILE,
        CARD_FILE,
        "validation.json",
        "result.json",
    }
    card = EncoderCard.model_validate_json((model_dir / CARD_FILE).read_bytes())
    result = json.loads((model_dir / "result.json").read_text())
    assert EncoderCard.model_validate(result) == card
    # The code and environment that made it, for the retriever's manifest.
    assert result["provenance"]["code"] and result["provenance"]["environment"]["python"]
    tok_result = json.loads((tok_dir / "result.json").read_text())
    assert card.dataset_version == manifest.version
    assert card.tokenizer_version == tok_result["version"]
    assert card.tokenizer_sha256 == tok_result["model_sha256"]
    assert card.train_documents == len(manifest.split_documents("train"))
    assert card.pairs["heading"] > 0 and card.steps > 0 and card.settings.dim == 16
    # Every file an index loads is named, by sha256, in the card.
    for name, sha in ((ENCODER_FILE, card.encoder_sha256), (TOKENIZER_FILE, card.tokenizer_sha256)):
        assert hashlib.sha256((model_dir / name).read_bytes()).hexdigest() == sha


@pytest.mark.slow
def test_the_job_gates_its_encoder_against_bm25_on_validation_questions(
    trained: tuple[DatasetManifest, Path, Path],
) -> None:
    manifest, _, model_dir = trained
    figures = GateFigures.model_validate_json((model_dir / "validation.json").read_bytes())
    validation_docs = {d.doc_key for d in manifest.split_documents("validation")}
    # Questions only from pages the encoder never trained on, scored on both rankings.
    assert figures.questions > 0 and validation_docs
    assert figures.approved == (
        figures.hybrid_recall_at_10 >= figures.bm25_recall_at_10 and figures.hybrid_mrr_at_10 >= figures.bm25_mrr_at_10
    )


@pytest.mark.slow
def test_the_trained_encoder_serves_a_hybrid_index(trained: tuple[DatasetManifest, Path, Path], tmp_path: Path) -> None:
    _, _, model_dir = trained
    encoder = TextEncoder.load(model_dir)
    index = SqliteSearchIndex(tmp_path, encoder=encoder, durable=False)
    assert index.ranking == HYBRID_RANKING
    index.replace_documents(
        (
            f"svc/{topic}.md",
            "v1",
            [
                IndexedChunk(
                    chunk_id=topic, doc_key=f"svc/{topic}.md", service="svc", title=topic, heading_path=[], text=text
                )
            ],
        )
        for topic, text in TOPICS.items()
    )
    hits = index.search("where are my messages kept until a consumer reads them", k=4)
    assert hits and hits[0].doc_key == "svc/queue.md"
    index.close()


@pytest.mark.slow
def test_the_job_refuses_a_version_mismatch_and_bad_settings(
    trained: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    _, tok_dir, model_dir = trained
    channel = model_dir.parent / "input" / "data" / "dataset"
    (tmp_path / "input" / "data").mkdir(parents=True)
    (tmp_path / "input" / "data" / "dataset").symlink_to(channel.resolve())
    (tmp_path / "input" / "data" / "tokenizer").symlink_to(tok_dir)
    proc = _run(tmp_path, "docllm.jobs.retriever_job", {"dim": "-3"}, ["dataset", "tokenizer"])
    assert proc.returncode == 1
    assert "dim" in (tmp_path / "output" / "failure").read_text()
    proc = _run(
        tmp_path,
        "docllm.jobs.retriever_job",
        {"dim": "8", "epochs": "1", "batch_size": "16", "encoder_version": "enc-000000000000"},
        ["dataset", "tokenizer"],
    )
    assert proc.returncode == 1
    assert "does not match" in (tmp_path / "output" / "failure").read_text()

"""The job specs the job stages launch, and the artifact layout they publish under."""

from __future__ import annotations

from docllm.dataset.versions import DatasetDocument, DatasetManifest, DatasetStats
from docllm.service_layer.shards import shards_job_spec
from docllm.service_layer.tokenizer import tokenizer_job_spec
from docllm.tokenizer.settings import TokenizerSettings, tokenizer_version


def _manifest() -> DatasetManifest:
    docs = [
        DatasetDocument(doc_key="a", sha256="1" * 64, service="s3", split="train", chunk_ids=["a0"], token_estimate=1),
        DatasetDocument(doc_key="b", sha256="2" * 64, service="s3", split="test", chunk_ids=["b0"], token_estimate=1),
    ]
    return DatasetManifest(version="ds-1", created_at="", services=[], documents=docs, stats=DatasetStats())


def test_tokenizer_job_spec_follows_the_artifact_layout() -> None:
    m = _manifest()
    spec = tokenizer_job_spec(manifest=m, settings=TokenizerSettings(), artifact_bucket="art", job_name="tok-1")
    version = tokenizer_version(TokenizerSettings(), m)
    assert spec.image == "tokenizer" and spec.entry_point == "docllm.jobs.tokenizer_job"
    assert spec.channels == {"dataset": "s3://art/datasets/ds-1/"}
    assert spec.hyperparameters["output_uri"] == spec.output_uri == f"s3://art/tokenizers/{version}/"
    assert spec.hyperparameters["vocab_size"] == "32000"
    assert spec.tags == {"docllm-stage": "tokenizer", "docllm-dataset": "ds-1"}


def test_shards_job_spec_follows_the_artifact_layout() -> None:
    m = _manifest()
    version = tokenizer_version(TokenizerSettings(), m)
    spec = shards_job_spec(manifest=m, tokenizer_version=version, artifact_bucket="art", job_name="sh-1")
    assert spec.image == "tokenizer" and spec.entry_point == "docllm.jobs.shards_job"
    assert spec.channels == {"dataset": "s3://art/datasets/ds-1/", "tokenizer": f"s3://art/tokenizers/{version}/"}
    assert spec.hyperparameters["output_uri"] == spec.output_uri == f"s3://art/shards/ds-1/{version}/"
    assert spec.tags == {"docllm-stage": "shards", "docllm-dataset": "ds-1"}

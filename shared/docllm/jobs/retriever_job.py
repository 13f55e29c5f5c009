"""Retriever (dual encoder) training job: a dataset's train split and a tokenizer in, an encoder out.

Runs under the SageMaker container contract (``docllm.jobs.contract``), the same locally (a
subprocess) and on SageMaker (the training image: torch on CPU is enough, a run is minutes).

Channels:

* ``dataset``: ``manifest.json`` and ``train.jsonl`` of a dataset version (only the train split is
  read: the validation and test documents never shape the encoder);
* ``tokenizer``: ``tokenizer.model`` and ``result.json`` of a tokenizer job (its version and sha256
  are checked and recorded: the encoder is only valid with that tokenizer).

Hyperparameters: the fields of :class:`~docllm.search.encoder.EncoderSettings` (``dim``,
``epochs`` …), ``output_uri`` (optional: where the artefacts are published) and
``encoder_version`` (optional: checked against the version computed here).

* ``questions`` (optional): ``questions.jsonl``, a validation question file for the gate in place of
  the rule-made validation questions.

Artefacts in the model directory: ``encoder.npz``, ``tokenizer.model`` (a copy, so the encoder
directory is self-contained), ``card.json`` (:class:`~docllm.search.encoder.EncoderCard`),
``validation.json`` (:class:`~docllm.search.retriever_gate.GateFigures`: BM25 alone against BM25 +
this encoder over an index of the dataset's pages, on questions of its validation split; the
retriever stage's gate reads the verdict) and ``result.json`` (the card, written last: its presence
means every other file is there).

Local smoke run (a prefix laid out like ``/opt/ml``)::

    DOCLLM_SM_PREFIX=/tmp/job SM_CHANNELS='["dataset","tokenizer"]' python -m docllm.jobs.retriever_job
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import ValidationError

from docllm.dataset.versions import DatasetManifest, read_split_file
from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job
from docllm.provenance import provenance
from docllm.search.encoder import TOKENIZER_FILE, EncoderCard, EncoderSettings, TextEncoder
from docllm.search.retriever_gate import GateFigures

RESULT_FILE = "result.json"
VALIDATION_FILE = "validation.json"
QUESTIONS_FILE = "questions.jsonl"


def settings_from_hyperparameters(hp: dict[str, str]) -> EncoderSettings:
    """Parse :class:`EncoderSettings` out of job hyperparameters (every value a string; others ignored).

    >>> settings_from_hyperparameters({"dim": "64", "lowercase": "false", "output_uri": "s3://b/p"}).dim
    64
    """
    raw: dict[str, object] = {}
    for name in EncoderSettings.model_fields:
        if name in hp:
            try:
                raw[name] = json.loads(hp[name])
            except json.JSONDecodeError:
                raw[name] = hp[name]
    try:
        return EncoderSettings.model_validate(raw)
    except ValidationError as e:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in e.errors())
        raise JobInputError(f"invalid encoder hyperparameter(s) {fields}: {e}") from e


def _tokenizer_version(channel: Path) -> str:
    for name in ("result.json", "card.json"):
        path = channel / name
        if path.exists():
            version = json.loads(path.read_text(encoding="utf-8")).get("version")
            if version:
                return str(version)
    raise JobInputError("tokenizer channel lacks result.json or card.json naming its version")


def train_retriever(dataset_dir: Path, tokenizer_dir: Path, settings: EncoderSettings, out_dir: Path) -> EncoderCard:
    """Train on the dataset's train split and write every artefact but ``result.json``; return the card."""
    from docllm.search.encoder_train import build_encoder

    manifest_path, train_path = dataset_dir / "manifest.json", dataset_dir / "train.jsonl"
    tok_path = tokenizer_dir / TOKENIZER_FILE
    for p in (manifest_path, train_path, tok_path):
        if not p.exists():
            raise JobInputError(f"channel lacks {p.parent.name}/{p.name}")
    manifest = DatasetManifest.model_validate_json(manifest_path.read_bytes())
    try:
        return build_encoder(
            read_split_file(train_path),
            tok_path.read_bytes(),
            settings,
            out_dir,
            dataset_version=manifest.version,
            tokenizer_version=_tokenizer_version(tokenizer_dir),
            train_documents=len(manifest.split_documents("train")),
        )
    except ValueError as e:
        raise JobInputError(str(e)) from e


def validate_retriever(dataset_dir: Path, model_dir: Path, questions_dir: Path | None, work: Path) -> GateFigures:
    """The gate's figures: an index of every split's pages, BM25 alone against BM25 + the encoder just
    written to ``model_dir``, on the validation questions (a given file, or rule-made from the
    validation split, whose pages the encoder never trained on)."""
    from docllm.search.evaluation import load_question_file
    from docllm.search.retriever_gate import compare, index_split_records, split_paths, validation_questions
    from docllm.search.sqlite_index import SqliteSearchIndex

    if questions_dir is not None and (questions_dir / QUESTIONS_FILE).exists():
        questions = load_question_file(questions_dir / QUESTIONS_FILE)
    else:
        validation = dataset_dir / "validation.jsonl"
        questions = validation_questions(read_split_file(validation)) if validation.exists() else []
    index = SqliteSearchIndex(work, durable=False)
    try:
        for path in split_paths(dataset_dir):
            index_split_records(index, read_split_file(path))
        return compare(index, TextEncoder.load(model_dir), questions)
    finally:
        index.close()


def main(env: JobEnvironment) -> None:
    settings = settings_from_hyperparameters(env.hyperparameters)
    for channel in ("dataset", "tokenizer"):
        if channel not in env.channels:
            raise JobInputError(f"missing channel {channel!r}")
    card = train_retriever(env.channels["dataset"], env.channels["tokenizer"], settings, env.model_dir)
    expected = env.hyperparameters.get("encoder_version")
    if expected and expected != card.version:
        raise JobInputError(f"encoder_version {expected!r} does not match the data and settings ({card.version})")
    with tempfile.TemporaryDirectory(prefix="retriever-gate-") as work:
        figures = validate_retriever(env.channels["dataset"], env.model_dir, env.channels.get("questions"), Path(work))
    (env.model_dir / VALIDATION_FILE).write_text(figures.model_dump_json(indent=1), encoding="utf-8")
    # The card, and the code and environment that made it: the retriever's manifest names both.
    result = {**card.model_dump(mode="json"), "provenance": provenance()}
    (env.model_dir / RESULT_FILE).write_text(json.dumps(result, indent=1), encoding="utf-8")
    output_uri = env.hyperparameters.get("output_uri")
    if output_uri:
        contract.publish_directory(env.model_dir, output_uri)


if __name__ == "__main__":
    run_job(main)

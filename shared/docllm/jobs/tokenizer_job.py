"""Tokenizer training job: a dataset version's train split in, a SentencePiece + HF tokenizer out.

Runs under the SageMaker container contract (``docllm.jobs.contract``), the same
locally (a subprocess) and on SageMaker (the ``containers/tokenizer`` image).

Channels: ``dataset`` (``manifest.json``, ``train.jsonl`` …).
Hyperparameters: the fields of :class:`~docllm.tokenizer.settings.TokenizerSettings`,
``output_uri`` (optional: where the artefacts are published), ``tokenizer_version``
(optional: checked against the version computed here).

Mode ``reuse-if-covered`` (hyperparameter ``mode``; a ``continue`` family with a champion): the
``reuse`` channel holds an existing tokenizer (the champion's, version ``reuse_version``); its
coverage of the train split (:mod:`docllm.tokenizer.coverage`) is measured first. At least
``min_coverage``: nothing is trained, ``result.json`` is the
:class:`~docllm.tokenizer.coverage.CoverageDecision` saying so. Below: a tokenizer is trained as
in the plain mode and the decision carries it (``trained``) and the reason.

Local smoke run (a prefix laid out like ``/opt/ml``)::

    DOCLLM_SM_PREFIX=/tmp/job SM_CHANNELS='["dataset"]' python -m docllm.jobs.tokenizer_job
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from docllm.dataset.versions import DatasetManifest, read_split_file
from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job
from docllm.tokenizer.artifacts import SpecialTokens, TokenizerCard, TokenizerResult
from docllm.tokenizer.coverage import REUSE_IF_COVERED, Coverage, CoverageDecision, decide
from docllm.tokenizer.exceptions import TokenizerSettingsError, TokenizerTrainingError
from docllm.tokenizer.settings import (
    BOS_PIECE,
    EOS_PIECE,
    PAD_PIECE,
    UNK_PIECE,
    WHITESPACE_SYMBOLS,
    TokenizerSettings,
    tokenizer_version,
)


def train_tokenizer(
    dataset_dir: Path, settings: TokenizerSettings, out_dir: Path, *, work_dir: Path
) -> TokenizerResult:
    """Train and write every artefact but ``result.json`` into ``out_dir``; return the result.

    Raises
    ------
    JobInputError
        The dataset channel is incomplete, or SentencePiece rejected the settings.
    """
    import sentencepiece as spm
    import tokenizers

    from docllm.tokenizer.hf_export import export_hf, load_model_proto
    from docllm.tokenizer.train import train_from_records

    manifest_path, train_path = dataset_dir / "manifest.json", dataset_dir / "train.jsonl"
    for p in (manifest_path, train_path):
        if not p.exists():
            raise JobInputError(f"dataset channel lacks {p.name}")
    manifest = DatasetManifest.model_validate_json(manifest_path.read_bytes())
    version = tokenizer_version(settings, manifest)

    started = time.perf_counter()
    try:
        stats, model = train_from_records(
            read_split_file(train_path), settings, work_dir, split_bytes=train_path.stat().st_size
        )
    except TokenizerTrainingError as e:
        raise JobInputError(str(e)) from e
    seconds = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "tokenizer.model"
    model_path.write_bytes(model)
    export_hf(model_path, out_dir)
    proto = load_model_proto(model)
    spec, vocab_size = proto.trainer_spec, len(proto.pieces)
    sha = hashlib.sha256(model).hexdigest()
    specials = SpecialTokens(
        unk_id=spec.unk_id,
        bos_id=spec.bos_id,
        eos_id=spec.eos_id,
        pad_id=spec.pad_id,
        unk=UNK_PIECE,
        bos=BOS_PIECE,
        eos=EOS_PIECE,
        pad=PAD_PIECE,
    )
    card = TokenizerCard(
        version=version,
        dataset_version=manifest.version,
        settings=settings,
        vocab_size=vocab_size,
        special_tokens=specials,
        user_defined_symbols=[*WHITESPACE_SYMBOLS, *settings.extra_symbols],
        model_sha256=sha,
        train_documents=len(manifest.split_documents("train")),
        sample_chunks=stats.chunks_kept,
        sample_bytes=stats.bytes,
        sample_lines=stats.lines,
        long_lines_cut=stats.long_lines_cut,
        training_seconds=round(seconds, 3),
        sentencepiece_version=spm.__version__,
        tokenizers_version=tokenizers.__version__,
    )
    (out_dir / "card.json").write_text(card.model_dump_json(indent=1), encoding="utf-8")
    return TokenizerResult(
        version=version,
        dataset_version=manifest.version,
        vocab_size=vocab_size,
        model_type=settings.model_type,
        model_sha256=sha,
        eos_id=spec.eos_id,
        bos_id=spec.bos_id,
        pad_id=spec.pad_id,
        unk_id=spec.unk_id,
        training_seconds=round(seconds, 3),
        files=[*sorted(p.name for p in out_dir.iterdir() if p.is_file()), "result.json"],
    )


def publish_with_result(model_dir: Path, result_json: str, output_uri: str | None) -> None:
    """Write ``result.json`` beside the artefacts and publish them all when ``output_uri`` is set.

    :func:`docllm.jobs.contract.publish_directory` uploads ``result.json`` last, so
    its presence tells the completion handler every other file is there.
    """
    (model_dir / "result.json").write_text(result_json, encoding="utf-8")
    if output_uri:
        contract.publish_directory(model_dir, output_uri)


def measure_reuse(env: JobEnvironment) -> tuple[Coverage, str, float]:
    """The ``reuse`` channel's tokenizer's coverage of the dataset's train split, its version and the threshold."""
    from docllm.tokenizer.coverage import measure_coverage
    from docllm.tokenizer.encode import SentencePieceTokenizer

    hp = env.hyperparameters
    reuse = env.channels.get("reuse")
    if reuse is None or not (reuse / "tokenizer.model").exists():
        raise JobInputError("mode reuse-if-covered needs channel 'reuse' holding tokenizer.model")
    candidate = hp.get("reuse_version", "")
    if not candidate:
        raise JobInputError("mode reuse-if-covered needs hyperparameter 'reuse_version'")
    try:
        threshold = float(hp.get("min_coverage", ""))
    except ValueError:
        raise JobInputError(f"hyperparameter 'min_coverage' is not a number: {hp.get('min_coverage')!r}") from None
    if not 0 < threshold <= 1:
        raise JobInputError(f"hyperparameter 'min_coverage' must be in (0, 1], got {threshold}")
    train_path = env.channels["dataset"] / "train.jsonl"
    if not train_path.exists():
        raise JobInputError("dataset channel lacks train.jsonl")
    tok = SentencePieceTokenizer.from_file(reuse / "tokenizer.model")
    cov = measure_coverage(tok, read_split_file(train_path), split_bytes=train_path.stat().st_size)
    return cov, candidate, threshold


def main(env: JobEnvironment) -> None:
    try:
        settings = TokenizerSettings.from_hyperparameters(env.hyperparameters)
    except TokenizerSettingsError as e:
        raise JobInputError(str(e)) from e
    if "dataset" not in env.channels:
        raise JobInputError("missing channel 'dataset'")
    mode = env.hyperparameters.get("mode", "train")
    if mode not in ("train", REUSE_IF_COVERED):
        raise JobInputError(f"hyperparameter 'mode' must be train or {REUSE_IF_COVERED}, got {mode!r}")
    output_uri = env.hyperparameters.get("output_uri")
    decision: CoverageDecision | None = None
    if mode == REUSE_IF_COVERED:
        cov, candidate, threshold = measure_reuse(env)
        reused, reason = decide(candidate, cov, threshold)
        decision = CoverageDecision(
            reused=reused, candidate_version=candidate, min_coverage=threshold, coverage=cov, reason=reason
        )
        if reused:
            env.model_dir.mkdir(parents=True, exist_ok=True)  # nothing else was written there
            publish_with_result(env.model_dir, decision.model_dump_json(indent=1), output_uri)
            return
    with tempfile.TemporaryDirectory(prefix="docllm-tokenizer-") as tmp:
        result = train_tokenizer(env.channels["dataset"], settings, env.model_dir, work_dir=Path(tmp))
    expected = env.hyperparameters.get("tokenizer_version")
    if expected and expected != result.version:
        raise JobInputError(f"tokenizer_version {expected!r} does not match the data and settings ({result.version})")
    body = result if decision is None else decision.model_copy(update={"trained": result})
    publish_with_result(env.model_dir, body.model_dump_json(indent=1), output_uri)


if __name__ == "__main__":
    run_job(main)

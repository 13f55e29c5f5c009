"""Train stage, method ``distill``: a student trained on a teacher family's champion's logits.

The student is a pretrain run on the family's own shards (its shape from ``preset`` and ``model``,
e.g. a half-width ``n_embd``) with ``train_config.distill`` set: the job reads the teacher's Hugging
Face export as its ``teacher`` channel and mixes the distillation term into the loss
(``docllm.training.distill``; docs/training.md, "Distillation"). The student shares the teacher's
tokenizer (``ModelFamily.tokenizer_family`` is the teacher family, so the tokenizer stage reuses the
teacher champion's); the job refuses a teacher whose tokenizer differs, and so does the launch here,
before a job is paid for.

What the launch names of the teacher (its model version and the sha256 of its newest compliance
manifest) goes into the job's ``train_config.distill``; the job copies it into ``result.json``
(``teacher``), and the student's own manifest lists the teacher among its resolved dependencies
(``service_layer/manifest.py``). The job's context records them as well (``teacher_version``,
``teacher_manifest_sha256``), and from it the model record.

Completion is the pretrain one (``train.complete_job``): the result is a ``TrainingJobResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.exceptions import PermanentError
from docllm.service_layer.jobs import champion_model

if TYPE_CHECKING:
    from docllm.training.families import ModelFamily

METHOD = "distill"


class NoTeacherError(PermanentError):
    """The teacher family has no champion to learn from, or it cannot teach this student."""


def teacher_of(p: Platform, family: ModelFamily) -> dict[str, Any]:
    """The teacher family's champion: ``{"version", "export_uri", "tokenizer_version", "manifest_sha256"}``
    (``manifest_sha256`` None when the champion has no manifest, e.g. approved outside the gate)."""
    from docllm.manifest.exceptions import ManifestNotFoundError
    from docllm.service_layer.manifest import find_manifest

    if family.distill is None:
        raise PermanentError(f"family {family.name} has no 'distill' section")
    teacher_family = family.distill.teacher_family
    champion, model = champion_model(p, teacher_family)
    if not champion:
        raise NoTeacherError(
            f"family {family.name} learns from the champion of {teacher_family}, which has none yet: "
            f"train and approve {teacher_family} first"
        )
    if model is None or not model.get("export_uri"):
        raise NoTeacherError(f"{teacher_family}'s champion {champion} has no training record with an export")
    try:
        sha = find_manifest(p, champion).sha256
    except ManifestNotFoundError:
        sha = None
    return {
        "version": str(champion),
        "export_uri": str(model["export_uri"]),
        "tokenizer_version": str(model.get("tokenizer_version") or ""),
        "manifest_sha256": sha,
    }


def launch(
    p: Platform,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the student ``family`` on its shards of ``dataset_version`` from the teacher champion.

    ``train_overrides`` may carry TrainConfig fields and a partial ``distill`` (e.g. another
    ``alpha``); the teacher's URI, version and manifest digest always come from the records."""
    from docllm.service_layer.train import launch_pretrain

    teacher = teacher_of(p, family)
    if teacher["tokenizer_version"] and teacher["tokenizer_version"] != tokenizer_version:
        raise NoTeacherError(
            f"the student {family.name} was given tokenizer {tokenizer_version}, its teacher "
            f"{teacher['version']} uses {teacher['tokenizer_version']}: distillation needs one tokenizer "
            "(the tokenizer stage reuses the teacher champion's for a distill family)"
        )
    assert family.distill is not None  # teacher_of checked
    overrides = dict(train_overrides or {})
    distill = {
        "temperature": family.distill.temperature,
        "alpha": family.distill.alpha,
        **dict(overrides.pop("distill", None) or {}),
        "teacher_uri": teacher["export_uri"],
        "teacher_version": teacher["version"],
        "teacher_manifest_sha256": teacher["manifest_sha256"],
    }
    result = launch_pretrain(
        p,
        family,
        dataset_version,
        tokenizer_version,
        request_id,
        train_overrides={**overrides, "distill": distill},
        method=METHOD,
        extra_context={
            "teacher_version": teacher["version"],
            "teacher_uri": teacher["export_uri"],
            "teacher_manifest_sha256": teacher["manifest_sha256"] or "",
        },
    )
    return {**result, "teacher_version": teacher["version"]}

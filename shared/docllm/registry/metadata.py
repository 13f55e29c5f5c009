"""How a :class:`PackageSpec` is written as SageMaker model package metadata, and read back.

Both registries use it: SageMaker stores these maps on the model package; the local registry
puts the same maps in the "SageMaker Model Package State Change" events it announces, so the
gate reads one shape whichever registry emitted the event.

``CustomerMetadataProperties`` (at most 50 entries, keys ≤ 128 and values ≤ 256 characters
of letters, digits, spaces and ``_.:/=+-@``) carries the ids and the metrics, one key per
metric (``docllm:metric:<name>``, ``repr`` of the float, which reads back exactly).
``MetadataProperties`` carries the lineage SageMaker has fields for: ``CommitId``,
``Repository``, ``GeneratedBy`` (the training job).

>>> spec = PackageSpec(model_version="m1", family="smoke", export_uri="s3://b/m1/hf/",
...     report_uri="s3://b/e1/report.json", report_sha256="0" * 64, evaluation_id="e1",
...     metrics={"heldout_loss": 2.5})
>>> customer_metadata(spec, stage="dev")["docllm:metric:heldout_loss"]
'2.5'
>>> metrics_from(customer_metadata(spec, stage="dev"))
{'heldout_loss': 2.5}
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from docllm.registry.models import PackageSpec

PREFIX: Final = "docllm:"
METRIC_PREFIX: Final = "docllm:metric:"
MODEL_VERSION: Final = "docllm:model_version"
FAMILY: Final = "docllm:family"
STAGE: Final = "docllm:stage"
#: The rollback marker (value: the alarm's name) and its incident: a rolled-back version is
#: ``Rejected`` with these two keys (see :data:`docllm.registry.models.ROLLED_BACK`).
ROLLED_BACK_ALARM: Final = "docllm:rolled-back"
ROLLBACK_INCIDENT: Final = "docllm:rolled-back-incident"
ROLLBACK_KEYS: Final = (ROLLED_BACK_ALARM, ROLLBACK_INCIDENT)
_META_UNSAFE = re.compile(r"[^\w.:/=+\-@ ]+")

#: PackageSpec field -> CustomerMetadataProperties key, for the optional and required ids.
_ID_KEYS: Final = {
    "model_version": MODEL_VERSION,
    "family": FAMILY,
    "export_uri": "docllm:export_uri",
    "dataset_version": "docllm:dataset_version",
    "tokenizer_version": "docllm:tokenizer_version",
    "training_job": "docllm:training_job",
    "evaluation_id": "docllm:evaluation_id",
}
_LINEAGE_KEYS: Final = {"commit": "CommitId", "repository": "Repository", "training_job": "GeneratedBy"}
_NAMESPACE: Final = uuid.UUID("6b1d3c1e-8f0a-4d39-9a55-2f1f4c8e7d10")


def customer_metadata(spec: PackageSpec, *, stage: str) -> dict[str, str]:
    """``CustomerMetadataProperties`` of ``spec`` (empty values left out: SageMaker refuses them)."""
    out = {STAGE: stage}
    for field, key in _ID_KEYS.items():
        value = getattr(spec, field)
        if value:
            out[key] = str(value)
    for name, value in spec.metrics.items():
        out[METRIC_PREFIX + name] = repr(float(value))
    return out


def metadata_properties(spec: PackageSpec) -> dict[str, str]:
    """``MetadataProperties`` of ``spec``: commit, repository and the job that made the model."""
    return {key: str(getattr(spec, field)) for field, key in _LINEAGE_KEYS.items() if getattr(spec, field)}


def model_metrics(spec: PackageSpec) -> dict[str, Any]:
    """``ModelMetrics``: the evaluation report as the package's model-quality statistics, with its digest."""
    return {
        "ModelQuality": {
            "Statistics": {
                "ContentType": "application/json",
                "S3Uri": spec.report_uri,
                "ContentDigest": f"sha256:{spec.report_sha256}",
            }
        }
    }


def metrics_from(customer: dict[str, str]) -> dict[str, float]:
    """The metrics stored in ``CustomerMetadataProperties`` (non-numbers ignored: someone else's key)."""
    out: dict[str, float] = {}
    for key, value in customer.items():
        if key.startswith(METRIC_PREFIX):
            try:
                out[key[len(METRIC_PREFIX) :]] = float(value)
            except ValueError:
                continue
    return out


def spec_fields_from(customer: dict[str, str], metadata: dict[str, str], metrics: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ModelPackage` fields stored in the three maps (the inverse of the writers above)."""
    fields: dict[str, Any] = {field: customer.get(key) for field, key in _ID_KEYS.items()}
    fields["metrics"] = metrics_from(customer)
    fields["commit"] = metadata.get("CommitId")
    fields["repository"] = metadata.get("Repository")
    fields["training_job"] = fields["training_job"] or metadata.get("GeneratedBy")
    fields["rolled_back_alarm"], fields["rollback_incident"] = rollback_from(customer)
    stats = (metrics.get("ModelQuality") or {}).get("Statistics") or {}
    fields["report_uri"] = stats.get("S3Uri", "")
    fields["report_sha256"] = str(stats.get("ContentDigest", "")).split(":", 1)[-1].lower()
    return fields


def rollback_metadata(alarm: str, incident_id: str) -> dict[str, str]:
    """The marker keys of a rolled-back version; values made storable (characters SageMaker refuses
    in a metadata value become ``_``, at most 256 characters).

    >>> rollback_metadata("docllm-dev-serving-5xx-rate@m2", "0123abcd")["docllm:rolled-back"]
    'docllm-dev-serving-5xx-rate@m2'
    >>> rollback_metadata("cpu (high), 5m", "i")["docllm:rolled-back"]
    'cpu _high_ 5m'
    """
    return {ROLLED_BACK_ALARM: _meta_value(alarm), ROLLBACK_INCIDENT: _meta_value(incident_id)}


def rollback_from(customer: dict[str, str]) -> tuple[str | None, str | None]:
    """``(alarm, incident)`` of the rollback marker in ``CustomerMetadataProperties`` (``None`` when unmarked)."""
    return customer.get(ROLLED_BACK_ALARM) or None, customer.get(ROLLBACK_INCIDENT) or None


def _meta_value(text: str) -> str:
    return (_META_UNSAFE.sub("_", text).strip() or "_")[:256]


def client_token(stage: str, model_version: str) -> str:
    """A ``ClientToken`` (36 characters of ``[a-zA-Z0-9-]``) fixed by the model version: a retried
    ``CreateModelPackage`` of the same version is the same request to SageMaker."""
    return str(uuid.uuid5(_NAMESPACE, f"{stage}/{model_version}"))

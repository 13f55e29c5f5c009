"""Dataset stage: freeze the processed chunks into an immutable dataset version."""

from __future__ import annotations

from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetBuildRequested, DatasetBuilt, parse_detail
from docllm.service_layer.outbox import commit


def handle_build_request(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    from docllm.dataset.versions import build_dataset

    request = parse_detail(raw, DatasetBuildRequested)
    services = list(request.services)
    paths: list[str] = []
    languages: list[str] = []
    if request.family:
        from docllm.training.families import family

        data_filter = family(request.family).data_filter  # an unknown family fails the request at once
        services = services or list(data_filter.services)
        paths, languages = list(data_filter.paths), list(data_filter.languages)
    manifest, created = build_dataset(
        p.state,
        p.objects,
        artifact_bucket=p.settings.artifact_bucket,
        services=services or None,
        family=request.family,
        paths=paths,
        languages=languages,
    )
    diff = manifest.diff
    # Through the outbox like every stage's event; the dataset record itself is content-addressed, so a
    # retry after a crash finds it and commits this event again.
    commit(
        p,
        [],
        [
            DatasetBuilt(
                dataset_version=manifest.version,
                manifest_uri=f"s3://{p.settings.artifact_bucket}/datasets/{manifest.version}/manifest.json",
                family=request.family,
                previous_version=manifest.previous_version,
                documents=len(manifest.documents),
                chunks=sum(len(d.chunk_ids) for d in manifest.documents),
                added=len(diff.added),
                removed=len(diff.removed),
                changed=len(diff.changed),
                train_after=request.train_after,
                request_id=request.request_id,
            )
        ],
    )
    p.metrics.put("DatasetsBuilt", int(created))
    return {"dataset_version": manifest.version, "created": created}

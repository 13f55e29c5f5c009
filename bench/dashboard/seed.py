"""Seed a local data directory with a large platform for the dashboard: 10,000 documents (a few with
chunks, some quarantined or duplicates), 50 model versions over three families with registry packages
(approved, rejected, pending, one rolled back), evaluations, gate decisions, deployments and an endpoint.

Everything goes through the platform's own ports (state, objects, registry), the way the stages write
it; the registry's announcements go to a bus that drops them, so no stage reacts to the fake versions.

    python -m bench.dashboard.seed DATA_DIR [--documents 10000] [--models 50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from docllm.adapters.local.registry import LocalModelRegistry
from docllm.bootstrap import build_platform
from docllm.events.envelope import BusEvent
from docllm.ports.bus import EventBus
from docllm.ports.state import Put
from docllm.registry.models import PackageSpec
from docllm.settings import Settings

SERVICES = ("quillstore", "beacon", "lanternauth", "driftdb", "harbor")
FAMILIES = ("tiny-s3", "iam", "aws-unified")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class DroppingBus(EventBus):
    """Takes the registry's announcements and drops them: the seeded versions stay where they are put."""

    def publish(self, events: Sequence[BusEvent]) -> None:
        return None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def seed_documents(data_dir: Path, count: int) -> None:
    p = build_platform(Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data_dir)}))
    writes: list[Put] = []
    for i in range(count):
        service = SERVICES[i % len(SERVICES)]
        key = f"{service}/guide/page-{i:05d}.md"
        status = "quarantined" if i % 97 == 0 else "duplicate" if i % 53 == 0 else "processed"
        item = {
            "doc_key": key,
            "bucket": p.settings.raw_bucket,
            "version_id": f"v{i}",
            "sha256": hashlib.sha256(key.encode()).hexdigest(),
            "size": 2000 + i % 900,
            "service": service,
            "status": status,
            "reason_code": "too_short" if status == "quarantined" else None,
            "reason": "the page has fewer than 20 words of text" if status == "quarantined" else None,
            "duplicate_of": f"{service}/guide/page-{i - 1:05d}.md" if status == "duplicate" else None,
            "title": f"{service.title()} guide, page {i}",
            "chunk_count": 3 if status == "processed" else 0,
            "updated_at": _iso(T0 + timedelta(minutes=i)),
        }
        writes.append(Put("docs", key, item))
        if len(writes) == 100:
            p.state.transact(writes)
            writes = []
        if i < 30 and status == "processed":
            lines = [
                json.dumps(
                    {
                        "chunk_id": f"{key}#{n}",
                        "doc_key": key,
                        "heading_path": [service.title(), f"Page {i}", f"Section {n}"],
                        "position": n,
                        "title": item["title"],
                        "text": f"Section {n} of page {i}: run `{service} sync --all` to copy every object.",
                    }
                )
                for n in range(3)
            ]
            p.objects.put(p.settings.processed_bucket, f"chunks/{key}.jsonl", ("\n".join(lines) + "\n").encode())
    if writes:
        p.state.transact(writes)


def seed_models(data_dir: Path, count: int) -> None:
    p = build_platform(Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data_dir)}))
    registry = LocalModelRegistry(data_dir / "registry.db", default_bus=DroppingBus(), stage=p.settings.stage)
    deployed: dict[str, str] = {}
    for i in range(count):
        family = FAMILIES[i % len(FAMILIES)]
        at = T0 + timedelta(hours=i)
        version = f"{family}-{at:%Y%m%d%H%M%S}-{i:03d}"
        metrics = {"final_val_loss": 3.0 - i * 0.01, "perplexity": 20.0 - i * 0.1, "qa_token_f1": 0.3 + i * 0.005}
        evaluation_id = f"evaluate-{version}"
        p.state.put(
            "models",
            version,
            {
                "version": version,
                "family": family,
                "job": f"train-{version}",
                "export_uri": f"s3://ArtifactBucket/models/{version}/export/",
                "metrics": metrics,
                "dataset_version": f"ds-{i // 3:04d}",
                "tokenizer_version": f"tok-{i // 9:04d}",
                "learning_rate": 3e-4 if i % 2 else 1e-3,
            },
        )
        p.state.put(
            "evaluations",
            evaluation_id,
            {"evaluation_id": evaluation_id, "model_version": version, "metrics": metrics, "completed_at": _iso(at)},
        )
        registry.register(
            PackageSpec(
                model_version=version,
                family=family,
                export_uri=f"s3://ArtifactBucket/models/{version}/export/",
                report_uri=f"s3://ArtifactBucket/evaluations/{evaluation_id}/report.json",
                report_sha256=hashlib.sha256(version.encode()).hexdigest(),
                metrics=metrics,
                evaluation_id=evaluation_id,
                dataset_version=f"ds-{i // 3:04d}",
                tokenizer_version=f"tok-{i // 9:04d}",
            )
        )
        status = "Rejected" if i % 5 == 4 else "PendingManualApproval" if i >= count - 3 else "Approved"
        if status != "PendingManualApproval":
            registry.set_status(version, status, f"gate: seeded {status.lower()}")  # type: ignore[arg-type]
        p.state.put(
            "decisions",
            f"{version}#{_iso(at)}",
            {
                "decision_id": f"d-{i}",
                "model_version": version,
                "family": family,
                "status": status if status != "PendingManualApproval" else "Pending",
                "decided_by": "gate",
                "reasons": ["perplexity within 5% of the champion", "qa_token_f1 not worse"],
                "at": _iso(at),
            },
        )
        if status == "Approved":
            registry.promote(family, version)
            if family == "tiny-s3":
                previous = deployed.get("local")
                p.state.put(
                    "deployments",
                    f"local#{_iso(at)}#dep-{i}",
                    {
                        "target": "local",
                        "model_version": version,
                        "previous_version": previous,
                        "started_at": _iso(at),
                        "finished_at": _iso(at + timedelta(seconds=30)),
                        "status": "InService",
                    },
                )
                deployed["local"] = version
    if "local" in deployed:
        p.state.put("endpoints", "local", {"model_version": deployed["local"], "deployed_at": _iso(T0)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--models", type=int, default=50)
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    seed_documents(args.data_dir, args.documents)
    seed_models(args.data_dir, args.models)
    print(f"seeded {args.documents} documents and {args.models} model versions in {args.data_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

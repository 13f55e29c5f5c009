"""Continuous training: which families are stale, when their pipelines start, how runs follow
their chain (pure domain; the stage is ``docllm.service_layer.pipelines``, docs/pipelines.md)."""

from docllm.pipelines.decide import Decision, decide, rate_seconds, thresholds_met
from docllm.pipelines.records import (
    CANCELLED,
    ENDED,
    PIPELINES_PK,
    RUNS_PK,
    FamilyPipeline,
    PipelineRun,
    RunSummary,
    StaleChange,
    Staleness,
    TrackedDocument,
    docs_pk,
)
from docllm.pipelines.runs import deploys_to, step

__all__ = [
    "CANCELLED",
    "ENDED",
    "PIPELINES_PK",
    "RUNS_PK",
    "Decision",
    "FamilyPipeline",
    "PipelineRun",
    "RunSummary",
    "StaleChange",
    "Staleness",
    "TrackedDocument",
    "decide",
    "deploys_to",
    "docs_pk",
    "rate_seconds",
    "step",
    "thresholds_met",
]

"""How a pipeline run follows its chain's events (pure).

Every event of a run's chain repeats its ``request_id`` (the run id). The run's stage is what works
now, after the last event seen; the run ends on "Stage Failed" (failed), on the gate's decision
("Model Rejected": decided; "Model Approved": decided, or deploying when the family's model is
deployed), on "Model Deployed" (deployed), or when cancelled or superseded.
"""

from __future__ import annotations

from dataclasses import dataclass

from docllm.pipelines.records import PipelineRun

#: The stage that works after each event of the chain (None: the event ends the run).
NEXT_STAGE: dict[str, str] = {
    "Dataset Built": "tokenizer",
    "Tokenizer Trained": "shards",
    "Shards Built": "train",
    "Model Trained": "evaluate",
    "Evaluation Completed": "gate",
}
#: Methods whose chain goes from the dataset straight to training (no tokenizer, no shards).
NO_TOKENIZER_METHODS = frozenset({"lora", "bedrock-customization"})


def deploys_to(deploy: list[str], target: str) -> bool:
    """Whether a family with these deploy targets deploys its approved champion on ``target``
    (the platform's ``DOCLLM_DEPLOY_TARGET``): ``default`` follows the platform, a name must match."""
    if target == "none":
        return False
    return "default" in deploy or target in deploy


@dataclass(frozen=True)
class Step:
    """What an event does to a run: its new stage or end state, and why."""

    stage: str | None = None
    state: str | None = None
    reason: str = ""
    model_version: str | None = None
    dataset_version: str | None = None


def step(run: PipelineRun, detail_type: str, detail: dict[str, object], *, deploys: bool) -> Step | None:
    """The effect of one chain event on a running run (None: nothing changes)."""
    if run.ended:
        return None
    model = detail.get("model_version")
    model_version = str(model) if isinstance(model, str) else None
    if detail_type == "Dataset Built":
        next_stage = "train" if run.method in NO_TOKENIZER_METHODS else "tokenizer"
        return Step(stage=next_stage, dataset_version=str(detail.get("dataset_version") or "") or None)
    if detail_type in NEXT_STAGE:
        return Step(stage=NEXT_STAGE[detail_type], model_version=model_version)
    if detail_type == "Stage Failed":
        return Step(state="failed", reason=f"{detail.get('stage')} failed: {detail.get('reason')}")
    if detail_type == "Model Rejected":
        return Step(state="decided", reason="rejected by the gate", model_version=model_version)
    if detail_type == "Model Approved":
        champion = detail.get("champion") == detail.get("model_version")
        if deploys and champion:
            return Step(stage="deploy", model_version=model_version)
        why = "approved" + ("" if champion else ", not the champion") + ("" if deploys else "; not deployed")
        return Step(state="decided", reason=why, model_version=model_version)
    if detail_type == "Model Deployed":
        return Step(state="deployed", reason=f"deployed on {detail.get('target')}", model_version=model_version)
    return None

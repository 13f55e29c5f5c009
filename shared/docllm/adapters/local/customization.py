"""The local platform has no model customization: Bedrock's base models and training are Bedrock's.

Every call raises :class:`CustomizationUnavailableError` (permanent: a request for a
``bedrock-customization`` family fails at once with "Stage Failed" and this reason, instead of
being retried). Use a ``lora`` family to fine-tune locally (docs/lora.md), or deploy to AWS.
"""

from __future__ import annotations

from typing import NoReturn

from docllm.exceptions import PermanentError
from docllm.ports.customization import CustomizationJob, CustomizationSpec, ModelCustomizer

REASON = (
    "Amazon Bedrock model customization cannot run on the local platform: the base model and its "
    "training are Bedrock's (a managed service). Run this family on AWS (DOCLLM_BACKEND=aws), or use "
    "method 'lora' to fine-tune a base model locally (docs/customization.md)"
)


class CustomizationUnavailableError(PermanentError):
    """Model customization was asked of the local platform."""


class LocalCustomizer(ModelCustomizer):
    """Refuses every call with :data:`REASON`."""

    def _refuse(self, what: str) -> NoReturn:
        raise CustomizationUnavailableError(f"{what}: {REASON}")

    def submit(self, spec: CustomizationSpec) -> str:
        self._refuse(f"cannot start customization job {spec.job_name}")

    def describe(self, job: str) -> CustomizationJob:
        self._refuse(f"cannot describe customization job {job}")

    def stop(self, job: str) -> None:
        self._refuse(f"cannot stop customization job {job}")

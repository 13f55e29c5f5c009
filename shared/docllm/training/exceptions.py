"""Errors of the training package."""

from docllm.exceptions import ConfigurationError, DocllmError


class TrainingError(DocllmError):
    """Base class of training errors."""


class TrainingConfigError(ConfigurationError):
    """A training or family setting is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CheckpointError(TrainingError):
    """A checkpoint could not be read or does not match the run resuming from it."""


class TrainingInterrupted(TrainingError):
    """The run was stopped (SIGTERM, spot interruption) after saving a checkpoint."""

    def __init__(self, step: int, checkpoint: str | None) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class UnknownFamilyError(ConfigurationError):
    """A request names a model family that ``families.yaml`` does not define."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model family {name!r}; known: {', '.join(known)}")
        self.name = name

"""Typed exceptions shared by every package.

Handlers map exception *types* (never message text) to outcomes: a
:class:`PermanentError` quarantines or dead-letters at once, a
:class:`TransientError` is retried by the queue.
"""


class DocllmError(Exception):
    """Base class of every error raised by docllm."""


class TransientError(DocllmError):
    """Something that may succeed when retried (throttling, a lost race)."""


class PermanentError(DocllmError):
    """Retrying cannot help: the input itself is wrong."""


class ConfigurationError(PermanentError):
    """A setting is missing or invalid."""


class NotFoundError(DocllmError):
    """The requested object, record or job does not exist."""


class ConflictError(TransientError):
    """A conditional write lost a race (version or condition mismatch)."""


class ContractError(PermanentError):
    """An event does not match its contract."""


class PlatformNotRunningError(DocllmError):
    """The local platform (``docllm up``) is not running for this data directory."""

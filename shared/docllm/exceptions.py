"""Typed exceptions shared by every package.

Handlers map exception *types* (never message text) to outcomes: a
:class:`PermanentError` quarantines or dead-letters at once, a
:class:`TransientError` (or any other error) is retried by the queue with a
backoff, then dead-lettered. The API answers an :class:`InvalidRequestError`
with a 400 and its message, and every server-side fault (configuration, AWS,
anything unexpected) with a 500 that carries only a request id.
"""


class DocllmError(Exception):
    """Base class of every error raised by docllm."""


class TransientError(DocllmError):
    """Something that may succeed when retried (throttling, a lost race)."""


class PermanentError(DocllmError):
    """Retrying cannot help: the input itself is wrong."""


class ConfigurationError(PermanentError):
    """A setting is missing or invalid."""


class PortInUseError(ConfigurationError):
    """The local API cannot listen on its port: something else already does."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"cannot serve the API on {host}:{port}: the port is already in use")
        self.host = host
        self.port = port


class NotFoundError(DocllmError):
    """The requested object, record or job does not exist."""


class ConflictError(TransientError):
    """A conditional write lost a race (version or condition mismatch)."""


class ContractError(PermanentError):
    """An event does not match its contract."""


class InvalidRequestError(PermanentError):
    """An API caller's request is wrong: the API answers 400 with this message, which
    must therefore be safe to show (what was wrong with the request, no internals).

    Every other error reaching the API is a server fault (500 with a request id only)."""


class PlatformNotRunningError(DocllmError):
    """The local platform (``docllm up``) is not running for this data directory."""

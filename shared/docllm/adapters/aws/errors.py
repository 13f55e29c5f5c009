"""Translation of AWS SDK errors into :mod:`docllm.exceptions` types.

Every AWS adapter calls the SDK inside :func:`aws_errors`, so callers only
ever see docllm's typed errors (each chained to the SDK error with
``raise … from e``). Mapping is by the error *code* the service returns
(``Error.Code``) and, for codes not listed, by the HTTP status; the message
text is never looked at, since AWS rewords messages freely.

=====================================  ==============================
code (or HTTP status)                  docllm type
=====================================  ==============================
NoSuchKey, NoSuchBucket, 404, …        :class:`AwsNotFoundError`
ConditionalCheckFailedException, …     :class:`AwsConflictError`
Throttling…, SlowDown, 5xx, 429, …     :class:`AwsTransientError`
AccessDenied, ValidationException, …   :class:`AwsPermanentError`
any other 4xx, or no status            :class:`AwsPermanentError`
connection / read timeouts             :class:`AwsTransientError`
=====================================  ==============================

Each ``Aws…Error`` subclasses the matching docllm type, so handlers that
catch :class:`~docllm.exceptions.TransientError` keep working, and carries
``code``, ``operation`` and ``http_status`` for logs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from docllm.exceptions import (
    ConflictError,
    DocllmError,
    NotFoundError,
    PermanentError,
    TransientError,
)


class AwsError(DocllmError):
    """Mixin data of every translated AWS error.

    Parameters
    ----------
    message:
        Human-readable summary (operation, code, the service's message).
    code:
        The service's ``Error.Code`` (``"NoSuchKey"``), or the exception
        class name for errors raised before a response (timeouts).
    operation:
        The SDK operation that failed (``"GetObject"``).
    http_status:
        The response's HTTP status, when there was a response.
    """

    def __init__(self, message: str, *, code: str, operation: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.http_status = http_status


class AwsNotFoundError(AwsError, NotFoundError):
    """The bucket, object, item, queue or job does not exist."""


class AwsConflictError(AwsError, ConflictError):
    """A conditional request lost (condition failed, name already in use)."""


class AwsTransientError(AwsError, TransientError):
    """Throttling, a 5xx or a network fault: the same request may succeed later."""


class AwsPermanentError(AwsError, PermanentError):
    """Access denied, invalid parameters: the same request will fail again."""


NOT_FOUND_CODES = frozenset(
    {
        "404",
        "NotFound",
        "NoSuchKey",
        "NoSuchBucket",
        "NoSuchVersion",
        "NoSuchUpload",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
    }
)

CONFLICT_CODES = frozenset(
    {
        "ConditionalCheckFailedException",
        "TransactionConflictException",
        "TransactionCanceledException",
        "PreconditionFailed",
        "ConditionalRequestConflict",
        "OperationAborted",
        "ConflictException",
        # SageMaker: a job of that name exists; a resubmission after a crash lands here.
        "ResourceInUse",
        # SQS: the visibility of a message we held expired and another consumer has it.
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "KMS.ThrottlingException",
        "KmsThrottled",
        "KMSThrottlingException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        # SageMaker instance quota: frees up when other jobs finish.
        "ResourceLimitExceeded",
        # Botocore refreshes role credentials; the retried request signs with new ones.
        "ExpiredToken",
        "ExpiredTokenException",
    }
)

PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "MissingParameter",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidRange",
        "InvalidObjectState",
        "EntityTooLarge",
        "EntityTooSmall",
        "MalformedPolicy",
        "SerializationException",
        "ItemCollectionSizeLimitExceededException",
        "ReceiptHandleIsInvalid",
        "InvalidAttributeName",
        "InvalidAttributeValue",
        "InvalidMessageContents",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "KMS.InvalidStateException",
        "KMS.AccessDeniedException",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
    }
)

_BY_CODE: dict[str, type[AwsError]] = {
    **dict.fromkeys(PERMANENT_CODES, AwsPermanentError),
    **dict.fromkeys(TRANSIENT_CODES, AwsTransientError),
    **dict.fromkeys(CONFLICT_CODES, AwsConflictError),
    **dict.fromkeys(NOT_FOUND_CODES, AwsNotFoundError),
}

_NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def classify(code: str, http_status: int | None = None) -> type[AwsError]:
    """The docllm error type for an AWS error code (and HTTP status as fallback).

    Parameters
    ----------
    code:
        ``Error.Code`` from the response.
    http_status:
        ``ResponseMetadata.HTTPStatusCode``; decides for codes not listed.

    Examples
    --------
    >>> classify("NoSuchKey").__name__
    'AwsNotFoundError'
    >>> classify("SomethingNew", 503).__name__
    'AwsTransientError'
    """
    if code in _BY_CODE:
        return _BY_CODE[code]
    if http_status is None:
        # No code we know and no status: retrying blind could loop, the DLQ is the safer end.
        return AwsPermanentError
    if http_status >= 500 or http_status == 429:
        return AwsTransientError
    if http_status == 404:
        return AwsNotFoundError
    if http_status in (409, 412):
        return AwsConflictError
    return AwsPermanentError


def translate(
    error: ClientError,
    *,
    operation: str | None = None,
    overrides: Mapping[str, type[AwsError]] | None = None,
) -> AwsError:
    """Build the docllm error for one :class:`botocore.exceptions.ClientError`.

    Parameters
    ----------
    error:
        The SDK error.
    operation:
        Name for the message; defaults to the SDK's ``operation_name``.
    overrides:
        Per-call code → type mapping consulted first, for codes whose meaning
        depends on the call (SageMaker answers ``DescribeTrainingJob`` on an
        unknown name with ``ValidationException``).

    Examples
    --------
    >>> e = ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "PutObject")
    >>> isinstance(translate(e), TransientError)
    True
    """
    err = error.response.get("Error", {})
    meta = error.response.get("ResponseMetadata", {})
    code = str(err.get("Code") or meta.get("HTTPStatusCode") or "Unknown")
    status = meta.get("HTTPStatusCode")
    op = operation or error.operation_name
    cls = (overrides or {}).get(code) or classify(code, status)
    message = f"{op} failed: {code}: {err.get('Message', '')}".rstrip(": ")
    return cls(message, code=code, operation=op, http_status=status)


@contextmanager
def aws_errors(operation: str, *, overrides: Mapping[str, type[AwsError]] | None = None) -> Iterator[None]:
    """Run SDK calls and re-raise their failures as docllm errors.

    Parameters
    ----------
    operation:
        What the block does, for messages (``"S3 GetObject raw/a.md"``).
    overrides:
        See :func:`translate`.

    Examples
    --------
    >>> with aws_errors("demo"):
    ...     pass
    """
    try:
        yield
    except ClientError as e:
        raise translate(e, operation=operation, overrides=overrides) from e
    except S3UploadFailedError as e:
        # boto3 re-raises the ClientError of a failed upload as this type, chained implicitly.
        inner = e.__context__
        if isinstance(inner, ClientError):
            raise translate(inner, operation=operation, overrides=overrides) from e
        raise AwsTransientError(f"{operation} failed: {e}", code=type(e).__name__, operation=operation) from e
    except _NETWORK_ERRORS as e:
        raise AwsTransientError(f"{operation} failed: {e}", code=type(e).__name__, operation=operation) from e
    except ParamValidationError as e:
        raise AwsPermanentError(
            f"{operation} rejected before sending: {e}", code=type(e).__name__, operation=operation
        ) from e

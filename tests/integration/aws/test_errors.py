"""Error translation: by code, then by HTTP status; never by message text."""

from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from docllm.adapters.aws.errors import (
    AwsConflictError,
    AwsNotFoundError,
    AwsPermanentError,
    AwsTransientError,
    aws_errors,
    translate,
)
from docllm.exceptions import ConflictError, NotFoundError, PermanentError, TransientError


def client_error(code: str, status: int | None = 400, message: str = "irrelevant") -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": message}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "SomeOperation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFoundError),
        ("404", 404, NotFoundError),
        ("NoSuchBucket", 404, NotFoundError),
        ("ResourceNotFoundException", 400, NotFoundError),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, NotFoundError),
        ("ConditionalCheckFailedException", 400, ConflictError),
        ("PreconditionFailed", 412, ConflictError),
        ("ResourceInUse", 400, ConflictError),
        ("ThrottlingException", 400, TransientError),
        ("ProvisionedThroughputExceededException", 400, TransientError),
        ("SlowDown", 503, TransientError),
        ("InternalError", 500, TransientError),
        ("AccessDenied", 403, PermanentError),
        ("ValidationException", 400, PermanentError),
        ("KMS.DisabledException", 400, PermanentError),
    ],
)
def test_known_codes_map_to_their_docllm_type(code: str, status: int, expected: type[Exception]) -> None:
    assert isinstance(translate(client_error(code, status)), expected)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, AwsTransientError),
        (429, AwsTransientError),
        (404, AwsNotFoundError),
        (409, AwsConflictError),
        (400, AwsPermanentError),
        (None, AwsPermanentError),
    ],
)
def test_unknown_codes_fall_back_to_http_status(status: int | None, expected: type[Exception]) -> None:
    assert type(translate(client_error("BrandNewCode", status))) is expected


def test_message_text_does_not_change_the_mapping() -> None:
    a = translate(client_error("AccessDenied", 403, message="throttled, not found, try again"))
    b = translate(client_error("AccessDenied", 403, message=""))
    assert type(a) is type(b) is AwsPermanentError


def test_conflict_is_retryable_as_a_transient_error() -> None:
    # Handlers retry ConflictError like any TransientError (docllm.exceptions hierarchy).
    assert isinstance(translate(client_error("ConditionalCheckFailedException")), TransientError)


def test_translated_error_keeps_code_operation_status_and_cause() -> None:
    original = client_error("NoSuchKey", 404)
    with pytest.raises(AwsNotFoundError) as info, aws_errors("S3 GetObject s3://b/k"):
        raise original
    assert info.value.code == "NoSuchKey"
    assert info.value.http_status == 404
    assert info.value.operation == "S3 GetObject s3://b/k"
    assert info.value.__cause__ is original


def test_overrides_take_precedence_over_the_table() -> None:
    error = translate(client_error("ValidationException"), overrides={"ValidationException": AwsNotFoundError})
    assert isinstance(error, NotFoundError)


def test_network_failures_are_transient() -> None:
    with pytest.raises(TransientError), aws_errors("demo"):
        raise EndpointConnectionError(endpoint_url="https://example.invalid")


def test_client_side_parameter_errors_are_permanent() -> None:
    with pytest.raises(PermanentError), aws_errors("demo"):
        raise ParamValidationError(report="missing Bucket")


def test_upload_failure_is_translated_from_its_underlying_client_error() -> None:
    with pytest.raises(PermanentError) as info, aws_errors("upload"):
        try:
            raise client_error("AccessDenied", 403)
        except ClientError:
            raise S3UploadFailedError("Failed to upload") from None
    assert info.value.code == "AccessDenied"  # type: ignore[attr-defined]

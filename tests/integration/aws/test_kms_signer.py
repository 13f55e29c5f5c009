"""KmsSigner: requests against botocore's KMS model, signing on moto, and a round trip whose
signature is checked by securesystemslib (Stubber, since moto ignores MessageType=DIGEST)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.dsse import Envelope

from docllm.adapters.aws.kms_signer import KEY_SPEC, SIGNING_ALGORITHM, KmsSigner
from docllm.exceptions import ConfigurationError, DocllmError, NotFoundError, PermanentError
from docllm.ports.signer import envelope_payload, verify_envelope

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'


def assert_valid(operation: str, params: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("kms")
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    validate_parameters(params, shape)


def test_sign_and_get_public_key_requests_are_valid_for_the_service_model() -> None:
    assert_valid("GetPublicKey", {"KeyId": KEY_ARN})
    assert_valid(
        "Sign",
        {"KeyId": KEY_ARN, "Message": b"\x00" * 32, "MessageType": "DIGEST", "SigningAlgorithm": SIGNING_ALGORITHM},
    )
    assert_valid("CreateKey", {"KeySpec": KEY_SPEC, "KeyUsage": "SIGN_VERIFY"})


@pytest.fixture
def kms(aws: None) -> Any:
    return boto3.client("kms", region_name="eu-west-1")


def test_signs_with_a_p256_key_on_moto(kms: Any) -> None:
    key_id = kms.create_key(KeySpec=KEY_SPEC, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    signer = KmsSigner(key_arn=key_id, client=kms)
    assert (signer.public_key().keytype, signer.public_key().scheme) == ("ecdsa", "ecdsa-sha2-nistp256")
    envelope = signer.sign(PAYLOAD)
    assert envelope_payload(envelope) == PAYLOAD
    [sig] = envelope["signatures"]
    assert sig["keyid"] == signer.key_id
    # KMS itself agrees the signature is over the digest of the DSSE pre-authentication encoding.
    pae = Envelope(PAYLOAD, envelope["payloadType"], {}).pae()
    verdict = kms.verify(
        KeyId=key_id,
        Message=hashlib.sha256(pae).digest(),
        MessageType="DIGEST",
        Signature=base64.b64decode(sig["sig"]),
        SigningAlgorithm=SIGNING_ALGORITHM,
    )
    assert verdict["SignatureValid"]


def test_a_key_that_cannot_sign_is_a_configuration_error(kms: Any) -> None:
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(ConfigurationError, match=KEY_SPEC):
        KmsSigner(key_arn=key_id, client=kms).public_key()


def test_an_unknown_key_is_a_typed_error(kms: Any) -> None:
    with pytest.raises(DocllmError) as info:
        KmsSigner(key_arn="arn:aws:kms:eu-west-1:123456789012:key/absent", client=kms).public_key()
    assert isinstance(info.value, NotFoundError | PermanentError)


def test_the_envelope_verifies_with_the_public_key_kms_gives() -> None:
    # KMS's part played by a local P-256 key: GetPublicKey returns its DER, Sign signs the digest.
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    client = boto3.client("kms", region_name="eu-west-1")
    stub = Stubber(client)
    stub.add_response(
        "get_public_key",
        {
            "KeyId": KEY_ARN,
            "PublicKey": der,
            "KeySpec": KEY_SPEC,
            "KeyUsage": "SIGN_VERIFY",
            "SigningAlgorithms": [SIGNING_ALGORITHM],
        },
        {"KeyId": KEY_ARN},
    )
    signer = KmsSigner(key_arn=KEY_ARN, client=client)
    with stub:
        public = signer.public_key()
        pae = Envelope(PAYLOAD, "application/vnd.in-toto+json", {}).pae()
        digest = hashlib.sha256(pae).digest()
        signature = private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        stub.add_response(
            "sign",
            {"KeyId": KEY_ARN, "Signature": signature, "SigningAlgorithm": SIGNING_ALGORITHM},
            {"KeyId": KEY_ARN, "Message": digest, "MessageType": "DIGEST", "SigningAlgorithm": SIGNING_ALGORITHM},
        )
        envelope = signer.sign(PAYLOAD)
        stub.assert_no_pending_responses()
    assert verify_envelope(envelope, public)
    tampered = {**envelope, "payload": base64.b64encode(PAYLOAD + b" ").decode()}
    assert not verify_envelope(tampered, public)

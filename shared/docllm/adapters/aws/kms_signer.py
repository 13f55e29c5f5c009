"""AWS :class:`~docllm.ports.signer.ManifestSigner`: a KMS asymmetric key that never leaves KMS.

The key must be ``KeySpec: ECC_NIST_P256`` with ``KeyUsage: SIGN_VERIFY``: signatures are ECDSA
over P-256 with SHA-256 (KMS ``ECDSA_SHA_256``, securesystemslib ``ecdsa-sha2-nistp256``), a
scheme every DSSE/in-toto verifier knows. securesystemslib's ``AWSSigner`` hashes the DSSE
pre-authentication encoding locally and sends KMS only the digest (``MessageType=DIGEST``), so
a manifest of any size is one small ``kms:Sign`` call. The public key is read once with
``kms:GetPublicKey``. Those two actions are all the role needs on the key.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import boto3
from cryptography.hazmat.primitives.serialization import load_der_public_key
from securesystemslib.signer import AWSSigner, Signature, Signer, SSlibKey

from docllm.adapters.aws.errors import aws_errors
from docllm.exceptions import ConfigurationError
from docllm.ports.signer import ManifestSigner

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

#: The KMS key spec and signing algorithm the template's signing key must have.
KEY_SPEC = "ECC_NIST_P256"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
SCHEME = "ecdsa-sha2-nistp256"


class KmsSigner(ManifestSigner):
    """Signs with a KMS asymmetric key.

    Parameters
    ----------
    key_arn:
        The key's ARN (an alias ARN works too).
    client:
        A boto3 KMS client; one is built on first use when omitted (never at import).

    Examples
    --------
    >>> signer = KmsSigner(key_arn="arn:aws:kms:eu-west-1:123456789012:key/…")  # doctest: +SKIP
    >>> envelope = signer.sign(payload)  # doctest: +SKIP
    """

    def __init__(self, *, key_arn: str, client: KMSClient | None = None) -> None:
        self.key_arn = key_arn
        self._client = client
        self._public: SSlibKey | None = None
        self._aws: _KmsDigestSigner | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> KMSClient:
        if self._client is None:
            self._client = boto3.client("kms")
        return self._client

    def public_key(self) -> SSlibKey:
        with self._lock:
            if self._public is None:
                self._public = self._import()
            return self._public

    def _import(self) -> SSlibKey:
        with aws_errors(f"KMS GetPublicKey {self.key_arn}"):
            resp = self.client.get_public_key(KeyId=self.key_arn)
        if resp.get("KeyUsage") != "SIGN_VERIFY" or SIGNING_ALGORITHM not in resp.get("SigningAlgorithms", []):
            raise ConfigurationError(
                f"KMS key {self.key_arn} cannot sign manifests: it must be KeySpec {KEY_SPEC} with KeyUsage "
                f"SIGN_VERIFY (got {resp.get('KeySpec')}, {resp.get('KeyUsage')})"
            )
        return SSlibKey.from_crypto(load_der_public_key(resp["PublicKey"]), scheme=SCHEME)

    def _signer(self) -> Signer:
        public = self.public_key()
        with self._lock:
            if self._aws is None:
                self._aws = _KmsDigestSigner(self.key_arn, public, self.client)
            return self._aws


class _KmsDigestSigner(Signer):
    """securesystemslib's AWSSigner on our client, with its errors translated.

    AWSSigner builds its own client from the environment; ours is injected (tests, a session
    with other credentials), so it is set on the instance after construction.
    """

    def __init__(self, key_arn: str, public: SSlibKey, client: Any) -> None:
        self._aws = AWSSigner(key_arn, public)
        self._aws.client = client

    @property
    def public_key(self) -> SSlibKey:
        return self._aws.public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Any, secrets_handler: Any = None) -> Signer:
        raise NotImplementedError("built by KmsSigner, not from a key URI")

    def sign(self, payload: bytes) -> Signature:
        with aws_errors("KMS Sign"):
            return self._aws.sign(payload)

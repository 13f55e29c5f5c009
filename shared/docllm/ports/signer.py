"""Manifest signer port: a local key locally, a KMS asymmetric key on AWS.

A signature is a DSSE envelope (https://github.com/secure-systems-lab/dsse), the signing wrapper
in-toto attestations travel in: the signature covers ``PAE(payloadType, payload)``, so the
payload's bytes and its declared type are both signed. Envelopes are built and checked by
securesystemslib (MIT), not by code of ours; an adapter only supplies the securesystemslib
``Signer`` that holds (or reaches) the private key.

>>> envelope = signer.sign(b'{"_type": "https://in-toto.io/Statement/v1", ...}')  # doctest: +SKIP
>>> verify_envelope(envelope, signer.public_key())  # doctest: +SKIP
True
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import Error as SecureSystemsLibError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signer, SSlibKey

from docllm.exceptions import ConfigurationError, NotFoundError

#: DSSE payload type of an in-toto statement.
PAYLOAD_TYPE = "application/vnd.in-toto+json"


class ManifestSigner(ABC):
    """Signs manifest payloads into DSSE envelopes."""

    @property
    def key_id(self) -> str:
        """The signing key's id as it appears in each signature (securesystemslib's key id: the
        sha256 of the public key's canonical form)."""
        return self.public_key().keyid

    @abstractmethod
    def public_key(self) -> SSlibKey:
        """The public key that verifies this signer's envelopes."""

    @abstractmethod
    def _signer(self) -> Signer:
        """The securesystemslib signer holding (or reaching) the private key."""

    def sign(self, payload: bytes, *, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
        """A DSSE envelope over ``payload``, as its JSON form
        (``{"payload": b64, "payloadType": …, "signatures": [{"keyid", "sig": b64}]}``)."""
        envelope = Envelope(payload=payload, payload_type=payload_type, signatures={})
        envelope.sign(self._signer())
        return dict(envelope.to_dict())


def public_key_from_dict(data: dict[str, Any]) -> Key:
    """A key from its JSON form (``{"keyid", "keytype", "scheme", "keyval"}``, as
    :func:`public_key_to_dict` writes and auditors are given)."""
    body = {k: v for k, v in data.items() if k != "keyid"}
    return Key.from_dict(str(data["keyid"]), body)


def public_key_to_dict(key: Key) -> dict[str, Any]:
    """The JSON form of a public key, with its id."""
    return {"keyid": key.keyid, **key.to_dict()}


PublicKeys = Key | dict[str, Any] | Iterable[Key | dict[str, Any]]
"""One public key or several, each a securesystemslib ``Key`` or its JSON form."""


def as_keys(public_keys: PublicKeys) -> list[Key]:
    """``public_keys`` as a list of ``Key``."""
    many = [public_keys] if isinstance(public_keys, Key | dict) else list(public_keys)
    return [public_key_from_dict(k) if isinstance(k, dict) else k for k in many]


def computed_key_id(key: Key) -> str:
    """securesystemslib's default key id of ``key``: the sha256 of the canonical JSON of its type,
    scheme and value. A key id that is this digest commits to the key itself, so a key file whose
    content does not hash to its id is not the key that id names."""
    canonical = encode_canonical({"keytype": key.keytype, "scheme": key.scheme, "keyval": key.keyval})
    assert isinstance(canonical, str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def envelope_key_ids(envelope: dict[str, Any]) -> list[str]:
    """The key ids the envelope's signatures name (as they claim; nothing verified)."""
    signatures = envelope.get("signatures") if isinstance(envelope, dict) else None
    if not isinstance(signatures, list):
        return []
    return [str(s["keyid"]) for s in signatures if isinstance(s, dict) and s.get("keyid")]


def verify_envelope(envelope: dict[str, Any] | Envelope, public_key: PublicKeys) -> bool:
    """Whether ``envelope`` carries a valid signature by ``public_key`` (or by one of several keys)
    over its payload.

    False, never an exception, for anything that is not such an envelope: a malformed one, a
    signature by another key, a payload or payload type changed after signing.
    """
    try:
        keys = as_keys(public_key)
        # from_dict rewrites the signatures it is given: hand it a copy.
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_dict(_copy(envelope))
        env.verify(keys, 1)
    except (SecureSystemsLibError, KeyError, ValueError, TypeError, binascii.Error):
        return False
    return True


_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def load_public_keys(path: Path | str) -> list[Key]:
    """The public keys in a file an auditor holds: PEM (``SubjectPublicKeyInfo`` blocks, as
    ``manifest-signing.pub.pem`` or ``aws kms get-public-key`` converted to PEM), or JSON (one key
    as ``keys/<keyid>.json`` stores it, or a list of them).

    A PEM key gets securesystemslib's default scheme for its type (``ed25519``,
    ``ecdsa-sha2-nistp256`` for P-256: the schemes our signers use) and default key id, which is
    the id our signatures carry.

    Raises
    ------
    NotFoundError
        The file does not exist.
    ConfigurationError
        The file holds no public key in either form.
    """
    where = Path(path)
    try:
        raw = where.read_bytes()
    except (FileNotFoundError, IsADirectoryError) as e:
        raise NotFoundError(f"{where}: no such public key file") from e
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            keys: list[Key] = [SSlibKey.from_crypto(load_pem_public_key(b)) for b in _PEM_BLOCK.findall(raw)]
        else:
            data = json.loads(raw)
            keys = as_keys(data if isinstance(data, list) else [data])
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm, SecureSystemsLibError) as e:
        raise ConfigurationError(f"{where}: not a public key file (PEM or keys/<keyid>.json form): {e}") from e
    if not keys:
        raise ConfigurationError(f"{where}: holds no public key")
    return keys


def envelope_payload(envelope: dict[str, Any]) -> bytes:
    """The payload bytes of a DSSE envelope's JSON form (not verified: see :func:`verify_envelope`)."""
    return Envelope.from_dict(_copy(envelope)).payload


def _copy(envelope: dict[str, Any]) -> dict[str, Any]:
    return {**envelope, "signatures": [dict(s) for s in envelope.get("signatures", [])]}

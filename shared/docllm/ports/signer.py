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
from abc import ABC, abstractmethod
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import Error as SecureSystemsLibError
from securesystemslib.signer import Key, Signer, SSlibKey

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


def verify_envelope(envelope: dict[str, Any] | Envelope, public_key: Key | dict[str, Any]) -> bool:
    """Whether ``envelope`` carries a valid signature by ``public_key`` over its payload.

    False, never an exception, for anything that is not such an envelope: a malformed one, a
    signature by another key, a payload or payload type changed after signing.
    """
    key = public_key_from_dict(public_key) if isinstance(public_key, dict) else public_key
    try:
        # from_dict rewrites the signatures it is given: hand it a copy.
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_dict(_copy(envelope))
        env.verify([key], 1)
    except (SecureSystemsLibError, KeyError, ValueError, TypeError, binascii.Error):
        return False
    return True


def envelope_payload(envelope: dict[str, Any]) -> bytes:
    """The payload bytes of a DSSE envelope's JSON form (not verified: see :func:`verify_envelope`)."""
    return Envelope.from_dict(_copy(envelope)).payload


def _copy(envelope: dict[str, Any]) -> dict[str, Any]:
    return {**envelope, "signatures": [dict(s) for s in envelope.get("signatures", [])]}

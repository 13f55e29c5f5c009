"""The result of verifying a manifest: ok, or every mismatch named."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MismatchKind = Literal[
    "digest",  # an artefact's bytes are not the ones the manifest names
    "missing",  # an artefact (or object version) the manifest names cannot be read
    "unlisted",  # a file under an artefact prefix the manifest does not name (added later)
    "signature",  # the envelope's signature does not verify with the trusted key
    "unknown_key",  # the envelope names a key id with no trusted public key (none published, none given)
    "statement",  # the payload is not the statement shape we issue
    "chain",  # a chain entry is missing, moved, or does not name its predecessor's digest
    "state",  # the state's record of the chain and the store disagree
    "dataset",  # the dataset manifest and the statement disagree on the documents
    "provider",  # the provider holding the model (Amazon Bedrock) does not say what the manifest says of it
]


class Mismatch(BaseModel):
    """One thing that is not as the manifest says.

    >>> Mismatch(kind="digest", subject="s3://a/hf/model.safetensors", expected="ab…", actual="cd…").kind
    'digest'
    """

    kind: MismatchKind
    subject: str = Field(description="what it is about: a URI, a store key, a document key")
    expected: str | None = None
    actual: str | None = None
    detail: str = ""


class VerificationReport(BaseModel):
    """What ``docllm manifest verify`` prints (``--json``: this model)."""

    ok: bool
    model_version: str
    family: str
    manifest_key: str
    manifest_sha256: str | None = None
    sequence: int
    key_id: str | None = Field(
        default=None, description="the key id the manifest's signature was checked with (None: no trusted key)"
    )
    checked: dict[str, int] = Field(default_factory=dict, description="what was recomputed: kind -> count")
    mismatches: list[Mismatch] = Field(default_factory=list)

"""The compliance manifest of a model version: what it was made from, signed, chained, verifiable.

Pure modules (no I/O): :mod:`~docllm.manifest.canonical` (canonical JSON),
:mod:`~docllm.manifest.inputs` (what a manifest is assembled from),
:mod:`~docllm.manifest.statement` (the in-toto Statement v1 / SLSA Provenance v1 it is),
:mod:`~docllm.manifest.chain` (the per-family hash chain), :mod:`~docllm.manifest.verify`
(the verification report). Assembly, issue and verification against the stores live in
``docllm.service_layer.manifest``; the signer and the write-once store are ports
(``docllm.ports.signer``, ``docllm.ports.compliance``). See docs/compliance.md.
"""

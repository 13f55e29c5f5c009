"""Build ``bench/search/identset.jsonl``: questions that are identifiers, to measure the analyzer's value.

The heading-based dev set barely contains identifiers, so it cannot show
whether keeping ``s3:PutObject`` or ``--dry-run`` whole helps. This set can:
each question is one identifier found in the awsdocs corpus, of three kinds:

* ``action``  IAM actions, ``service:Action`` (``s3:PutObject``, ``ec2:DescribeInstances``)
* ``flag``    CLI options, ``--long-flag`` with at least one inner hyphen (``--dry-run``)
* ``api``     API operation names in CamelCase with 3+ parts (``PutBucketPolicy``)

Only identifiers that occur in 1 to 3 documents are kept, so the expected
documents (every document containing it, case-sensitively) are few and the
question has a right answer. Per kind, 30 are drawn at random (seed 13) from
those candidates. The expected documents are keyed ``<service>/<file name>``.

Bias: the identifier occurs verbatim in each expected document, so this set
rewards exact matching; it says nothing about natural-language questions.

Run: ``.venv/bin/python -m bench.search.make_identset``.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path

from bench.search.corpus import AWSDOCS, SERVICES, documents

OUT = Path(__file__).resolve().parent / "identset.jsonl"
PER_KIND = 30
SEED = 13
MAX_DOCS = 3
PATTERNS = {
    "action": re.compile(
        r"(?<![\w:])(?:s3|ec2|iam|lambda|sagemaker|cloudwatch|logs|sts|kms):[A-Z][a-z]+(?:[A-Z][a-z]+)+\b"
    ),
    "flag": re.compile(r"(?<![\w-])--[a-z]+(?:-[a-z]+)+\b"),
    "api": re.compile(r"(?<![\w:.-])(?:[A-Z][a-z]+){3,}\b(?![:.-]\w)"),
}


def build(root: Path = AWSDOCS) -> list[dict[str, object]]:
    """The question records, deterministic for a given corpus."""
    where: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in PATTERNS}
    for doc in documents(root, SERVICES):
        text = doc.path.read_text(encoding="utf-8", errors="replace").replace("\\", "")
        for kind, pattern in PATTERNS.items():
            for ident in set(pattern.findall(text)):
                where[kind][ident].add(doc.doc_key)
    rng = random.Random(SEED)
    out: list[dict[str, object]] = []
    for kind, found in where.items():
        candidates = sorted(i for i, keys in found.items() if len(keys) <= MAX_DOCS)
        for ident in rng.sample(candidates, min(PER_KIND, len(candidates))):
            keys = sorted(found[ident])
            out.append(
                {"question": ident, "expected_doc_keys": keys, "service_hint": keys[0].split("/")[0], "kind": kind}
            )
    return out


def main() -> None:
    records = build()
    OUT.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {len(records)} questions to {OUT}")


if __name__ == "__main__":
    main()

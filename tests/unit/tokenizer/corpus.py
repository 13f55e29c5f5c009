"""A small deterministic corpus with the hard cases: indentation, tabs, blank lines, unicode, digits."""

from __future__ import annotations

import random

WORDS = [
    "bucket",
    "object",
    "lambda",
    "function",
    "policy",
    "role",
    "instance",
    "volume",
    "snapshot",
    "region",
    "endpoint",
    "request",
    "response",
    "access",
    "denied",
    "configure",
    "permission",
    "version",
    "lifecycle",
    "replication",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "that",
    "on",
    "by",
    "this",
    "you",
    "your",
    "can",
    "use",
    "are",
]

CODE = """def handler(event, context):
    for record in event["Records"]:
        if record.get("eventName") == "ObjectCreated:Put":
\t\tprint(record)   # tab-indented on purpose
    return {"statusCode": 200}
"""

SPECIAL = [
    "Ünïcödé café naïve résumé — “quotes” and ‘apostrophes’",
    "日本語のドキュメント。한국어 문서입니다.",
    "emoji 🚀🔥 and math ∑∫√ and rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "  leading spaces, trailing spaces   ",
    "numbers 1234567890 3.14159 arn:aws:s3:::my-bucket-2024/key",
    "\n\nblank lines above\n\n\nand below\n",
    "line\r\nwith windows ending and \x0b vertical tab",
]


def texts(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
        parts = [f"# Title {i}", words.capitalize() + "."]
        if i % 3 == 0:
            parts.append("```python\n" + CODE + "```")
        parts.append(SPECIAL[i % len(SPECIAL)])
        out.append("\n\n".join(parts))
    return out

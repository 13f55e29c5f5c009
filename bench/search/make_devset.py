"""Build the retrieval dev set ``bench/search/devset.jsonl`` from ``../shared/corpus/awsdocs``.

Rules (deterministic, seed 13):

1. Per service, documents are shuffled and visited in order.
2. A document contributes one section: the first level-2/3 section whose
   body has at least 400 characters and whose heading is *distinctive*
   (appears in at most 2 documents of the whole corpus, so "Prerequisites"
   or "Related resources" never become questions).
3. Even-numbered questions are the section heading followed by the 3 words
   of the section body with the highest tf-idf (document frequency over the
   whole corpus) that are not in the heading, e.g.
   ``"Configuring bucket keys: kms, sse, reduce?"``; odd-numbered ones drop
   the heading and keep 4 such words plus the heading's last content word,
   which is closer to a terse user query and much harder.
4. The expected document is that file, keyed ``<service>/<file name>``, as
   ``docllm ingest <dir> --service <service>`` names it.

Bias: the questions reuse the document's own words, so lexical matching
(BM25) is favoured over any semantic retriever; numbers from this set are a
regression guard, not an absolute quality claim.

Run: ``.venv/bin/python -m bench.search.make_devset`` (about 10 s).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

from bench.search.corpus import AWSDOCS, SERVICES, Document, clean_heading, documents, sections
from docllm.search.analyzer import STOPWORDS

OUT = Path(__file__).resolve().parent / "devset.jsonl"
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]{3,}")
_MIN_BODY = 400
_COMMON = frozenset(
    [
        "amazon",
        "aws",
        "example",
        "following",
        "using",
        "use",
        "uses",
        "used",
        "also",
        "see",
        "information",
        "choose",
    ]
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(re.sub(r"\(http[^)]*\)", "", text))]


def build(per_service: int, seed: int = 13, root: Path = AWSDOCS) -> list[dict[str, object]]:
    docs = documents(root)
    texts = {d.doc_key: d.path.read_text(encoding="utf-8", errors="replace") for d in docs}
    df: Counter[str] = Counter()
    heading_df: Counter[str] = Counter()
    for d in docs:
        df.update(set(_words(texts[d.doc_key])))
        heading_df.update({h[-1].lower() for h, _ in sections(texts[d.doc_key]) if h})
    n_docs = len(docs)
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for service in SERVICES:
        pool: list[Document] = [d for d in docs if d.service == service]
        rng.shuffle(pool)
        taken = 0
        for d in pool:
            if taken >= per_service:
                break
            question = _question(texts[d.doc_key], df, heading_df, n_docs, terse=len(out) % 2 == 1)
            if question:
                out.append({"question": question, "expected_doc_keys": [d.doc_key], "service_hint": service})
                taken += 1
    return out


def _question(text: str, df: Counter[str], heading_df: Counter[str], n_docs: int, *, terse: bool) -> str | None:
    for path, body in sections(text):
        if len(path) < 2 or len(body) < _MIN_BODY:
            continue
        heading = clean_heading(path[-1])
        if heading_df[heading.lower()] > 2 or len(heading.split()) < 2:
            continue
        in_heading = set(_words(heading))
        tf = Counter(w for w in _words(body) if w not in STOPWORDS and w not in _COMMON and w not in in_heading)
        scored = sorted(tf, key=lambda w: (-tf[w] * math.log(n_docs / (1 + df[w])), w))
        if len(scored) >= 4:
            if terse:
                last = [w for w in _words(heading) if w not in STOPWORDS][-1:]
                return " ".join([*last, *scored[:4]])
            return f"{heading}: {', '.join(scored[:3])}?"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-service", type=int, default=20, help="questions per service (6 services)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSONL")
    args = parser.parse_args()
    rows = build(args.per_service)
    with args.out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()

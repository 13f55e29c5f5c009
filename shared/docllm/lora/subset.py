"""TF-IDF subsetting: keep the training sections richest in the domain's informative and rare terms.

The seeds' automotive report trains its LoRA adapter on a subset chosen by TF-IDF ("top 6k important
words + bottom 6k rare words"), so that the adapter sees the text densest in jargon and in the terms
that occur in few places, and the run costs less. Here a *section* is one record of the dataset's
``train.jsonl`` (a chunk: ingestion cuts documents at their headings), and:

1. **Terms**: each section's terms by the search analyzer (:func:`docllm.search.analyzer.analyze`:
   identifiers kept whole and split into their parts, stopwords dropped, words stemmed); tokens
   without a letter (numbers, versions) are left out.
2. **TF-IDF**: ``w(t, s) = count(t, s) · idf(t)``, with ``idf(t) = ln((1 + N) / (1 + df(t))) + 1``
   (``N`` sections, ``df`` the sections holding ``t``: scikit-learn's smoothed idf), each section's
   vector scaled to unit length, so a long section does not win by its length alone.
3. **Vocabularies**: the ``informative_terms`` terms of largest corpus weight ``Σ_s w(t, s)`` (common
   *and* specific to the domain: "bucket", "versioning"), and the ``rare_terms`` terms of smallest
   ``df`` (ties: larger weight first, then the term), the ones only a few sections explain.
4. **Scores**: a section's informative score is the sum of its weights over the informative terms,
   its rare score the sum over the rare terms.
5. **Selection**: ``max_sections`` sections are kept (or ``ceil(share · N)``): ``rare_share`` of them
   by rare score, the rest by informative score (highest first, ties by chunk id), the two halves
   never counting a section twice; the subset is balanced, as the report's is.

A section with fewer than ``min_terms`` distinct terms ("Choose **Next**.") takes no part (step 1
drops it): on unit-length vectors its one or two terms would weigh the most, its words would fill
the rare vocabulary, and there is nothing in it to learn.

What was kept (each section with both scores, why it was kept and its strongest terms) is returned
as a :class:`SubsetResult`, which the LoRA job writes to ``subset.json`` and summarises in its
``result.json``, for the compliance manifest. Pure: standard library and the analyzer, no I/O.
scikit-learn's ``TfidfVectorizer`` computes the same weights; it is not a dependency, and the few
lines below are the whole method.

Example
-------
>>> from docllm.dataset.versions import SplitRecord
>>> recs = [SplitRecord(chunk_id=f"c{i}", doc_key="s3/a.md", text=t) for i, t in enumerate([
...     "Versioning keeps every version of an object in the bucket.",
...     "Choose Next.",
...     "Versioning protects the objects in a bucket.",
...     "Lifecycle rules expire noncurrent versions of objects after a number of days.",
... ])]
>>> settings = SubsetConfig(max_sections=2, informative_terms=3, rare_terms=8, min_terms=4)
>>> result = select_sections(recs, settings)
>>> result.informative_sample, result.sections_too_short
(['version', 'object', 'bucket'], 1)
>>> [(k.chunk_id, k.reason) for k in result.kept]
[('c2', 'informative'), ('c3', 'rare')]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from docllm.dataset.versions import SplitRecord
from docllm.search.analyzer import analyze

#: Terms of each kept section recorded in the result (its heaviest ones).
TOP_TERMS_PER_SECTION = 5
#: Terms of each vocabulary recorded in the result (the full sets can hold thousands).
VOCABULARY_SAMPLE = 50


class SubsetConfig(BaseModel):
    """How many terms make each vocabulary and how many sections are kept (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    informative_terms: int = Field(default=6000, ge=1, description="terms of largest corpus TF-IDF weight")
    rare_terms: int = Field(default=6000, ge=0, description="terms of smallest document frequency")
    max_sections: int | None = Field(default=None, ge=1, description="sections kept; overrides share")
    share: float = Field(default=0.5, gt=0, le=1, description="share of the sections kept")
    rare_share: float = Field(default=0.5, ge=0, le=1, description="share of the kept chosen by rare score")
    min_terms: int = Field(default=5, ge=1, description="distinct terms a section needs to be kept")

    @model_validator(mode="after")
    def _rare_needs_terms(self) -> SubsetConfig:
        if self.rare_share > 0 and self.rare_terms == 0:
            raise ValueError("rare_share > 0 needs rare_terms > 0")
        return self

    def sections_to_keep(self, total: int) -> int:
        """How many of ``total`` sections are kept.

        >>> SubsetConfig(share=0.25).sections_to_keep(10), SubsetConfig(max_sections=40).sections_to_keep(10)
        (3, 10)
        """
        wanted = self.max_sections if self.max_sections is not None else math.ceil(self.share * total)
        return min(total, wanted)


class KeptSection(BaseModel):
    """One kept section, with its scores and why it was kept."""

    chunk_id: str
    doc_key: str
    reason: Literal["informative", "rare"]
    informative_score: float
    rare_score: float
    top_terms: list[str] = Field(description="its heaviest terms (TF-IDF), heaviest first")


class SubsetResult(BaseModel):
    """What subsetting kept: the settings, the sizes, samples of both vocabularies, each kept section."""

    method: Literal["tfidf"] = "tfidf"
    settings: SubsetConfig
    sections_total: int
    sections_too_short: int = Field(description="sections under min_terms distinct terms: never kept")
    sections_kept: int
    terms_total: int
    informative_sample: list[str] = Field(description="the heaviest informative terms, heaviest first")
    rare_sample: list[str] = Field(description="the rarest terms, rarest first")
    kept: list[KeptSection] = Field(description="in the order of the split file")

    def kept_ids(self) -> set[str]:
        return {k.chunk_id for k in self.kept}

    def summary(self) -> dict[str, object]:
        """The result without the per-section list (what ``result.json`` carries)."""
        return self.model_dump(mode="json", exclude={"kept"})


def section_terms(text: str) -> Counter[str]:
    """Term counts of a section: the analyzer's terms that hold a letter."""
    return Counter(t for t in analyze(text) if any(c.isalpha() for c in t))


def tfidf(sections: list[Counter[str]]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors of term-count sections (smoothed idf, module docstring step 2).

    >>> [round(w, 3) for w in tfidf([Counter(a=1, b=1), Counter(a=1)])[0].values()]
    [0.58, 0.815]
    """
    n = len(sections)
    df: Counter[str] = Counter(t for terms in sections for t in terms)
    idf = {t: math.log((1 + n) / (1 + d)) + 1 for t, d in df.items()}
    vectors = []
    for terms in sections:
        raw = {t: c * idf[t] for t, c in terms.items()}
        norm = math.sqrt(sum(w * w for w in raw.values())) or 1.0
        vectors.append({t: w / norm for t, w in raw.items()})
    return vectors


def select_sections(records: Iterable[SplitRecord], settings: SubsetConfig) -> SubsetResult:
    """The sections to train on (module docstring: the method). ``records`` is read once."""
    ids: list[tuple[str, str]] = []
    counts: list[Counter[str]] = []
    total = 0
    for r in records:
        total += 1
        terms = section_terms(r.text)
        if len(terms) >= settings.min_terms:  # shorter ones are neither kept nor counted in the statistics
            ids.append((r.chunk_id, r.doc_key))
            counts.append(terms)
    vectors = tfidf(counts)
    weight: Counter[str] = Counter()
    df: Counter[str] = Counter()
    for vec in vectors:
        weight.update(vec)
        df.update(vec.keys())
    informative = sorted(weight, key=lambda t: (-weight[t], t))[: settings.informative_terms]
    rare = sorted(df, key=lambda t: (df[t], -weight[t], t))[: settings.rare_terms]
    informative_set, rare_set = set(informative), set(rare)

    def score(vec: dict[str, float], vocabulary: set[str]) -> float:
        return sum(w for t, w in vec.items() if t in vocabulary)

    inf_scores = [score(v, informative_set) for v in vectors]
    rare_scores = [score(v, rare_set) for v in vectors]
    n_keep = min(settings.sections_to_keep(total), len(vectors))
    n_rare = round(n_keep * settings.rare_share)
    chosen: dict[int, Literal["informative", "rare"]] = {}
    for i in sorted(range(len(vectors)), key=lambda i: (-rare_scores[i], ids[i][0]))[:n_rare]:
        chosen[i] = "rare"
    for i in sorted(range(len(vectors)), key=lambda i: (-inf_scores[i], ids[i][0])):
        if len(chosen) >= n_keep:
            break
        chosen.setdefault(i, "informative")
    kept = [
        KeptSection(
            chunk_id=ids[i][0],
            doc_key=ids[i][1],
            reason=chosen[i],
            informative_score=round(inf_scores[i], 6),
            rare_score=round(rare_scores[i], 6),
            top_terms=[t for t, _ in sorted(vectors[i].items(), key=lambda tw: (-tw[1], tw[0]))][
                :TOP_TERMS_PER_SECTION
            ],
        )
        for i in sorted(chosen)
    ]
    return SubsetResult(
        settings=settings,
        sections_total=total,
        sections_too_short=total - len(vectors),
        sections_kept=len(kept),
        terms_total=len(weight),
        informative_sample=informative[:VOCABULARY_SAMPLE],
        rare_sample=rare[:VOCABULARY_SAMPLE],
        kept=kept,
    )


__all__ = ["KeptSection", "SubsetConfig", "SubsetResult", "section_terms", "select_sections", "tfidf"]

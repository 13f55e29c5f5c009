"""TF-IDF subsetting of the training sections: the weights, the two vocabularies, the balanced pick."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from docllm.dataset.versions import SplitRecord
from docllm.lora.subset import SubsetConfig, SubsetResult, section_terms, select_sections, tfidf


def _rec(i: int, text: str, doc: str | None = None) -> SplitRecord:
    return SplitRecord(chunk_id=f"c{i:02d}", doc_key=doc or f"s3/d{i}.md", text=text)


# Eight sections drawn from the domain's common terms (each term in most of them), two that are
# alone in naming rare things, one boilerplate line too short to count.
DOMAIN = ["bucket", "versioning", "object", "owner", "policy", "storage", "replication", "lifecycle"]
COMMON = [" ".join(DOMAIN[(i + k) % len(DOMAIN)] for k in range(6)).capitalize() + "." for i in range(8)]
RARE = [
    "Glacier Deep Archive restores an object from the bucket within twelve hours.",
    "BitTorrent clients cannot fetch a bucket object since the torrent retirement.",
]


def _records() -> list[SplitRecord]:
    recs = [_rec(i, t) for i, t in enumerate(COMMON)]
    recs += [_rec(10 + i, t) for i, t in enumerate(RARE)]
    recs.append(_rec(20, "Choose Next."))
    return recs


def test_tfidf_is_smoothed_idf_times_counts_on_unit_length_vectors() -> None:
    sections = [Counter(bucket=2, policy=1), Counter(bucket=1), Counter(glacier=1)]
    vectors = tfidf(sections)
    idf = {t: math.log(4 / (1 + df)) + 1 for t, df in {"bucket": 2, "policy": 1, "glacier": 1}.items()}
    raw = {"bucket": 2 * idf["bucket"], "policy": idf["policy"]}
    norm = math.hypot(*raw.values())
    assert vectors[0] == pytest.approx({t: w / norm for t, w in raw.items()})
    assert vectors[1] == {"bucket": 1.0} and vectors[2] == {"glacier": 1.0}
    for v in vectors:
        assert math.fsum(w * w for w in v.values()) == pytest.approx(1.0)


def test_terms_are_the_search_analyzers_without_numbers() -> None:
    assert section_terms("Enable s3:PutBucketVersioning on 3 buckets in 2024.") == Counter(
        {"enabl": 1, "s3:putbucketversioning": 1, "s3": 1, "putbucketvers": 1, "put": 1, "bucket": 2, "version": 1}
    )


def test_informative_terms_are_the_domains_heaviest_and_rare_terms_the_least_shared() -> None:
    result = select_sections(_records(), SubsetConfig(informative_terms=3, rare_terms=5, share=0.5))
    # Domain terms; not "bucket" nor "object": a term in every section tells sections apart no more
    # than a stopword (idf 1, the smallest).
    assert set(result.informative_sample) <= set(section_terms(" ".join(DOMAIN))) - {"bucket", "object"}
    # Each rare term occurs in one section only.
    df = Counter(t for r in _records() for t in set(section_terms(r.text)))
    assert {df[t] for t in result.rare_sample} == {1}


def test_the_kept_sections_are_balanced_between_informative_and_rare() -> None:
    result = select_sections(_records(), SubsetConfig(max_sections=4, informative_terms=5, rare_terms=40))
    reasons = Counter(k.reason for k in result.kept)
    assert reasons == {"informative": 2, "rare": 2}
    # The sections alone in naming rare things are kept for them.
    assert {k.chunk_id for k in result.kept if k.reason == "rare"} == {"c10", "c11"}
    informative = [k for k in result.kept if k.reason == "informative"]
    others = [k for k in result.kept if k.reason == "rare"]
    assert min(k.informative_score for k in informative) >= max(k.informative_score for k in others)


def test_sizes_are_configurable_and_the_order_is_the_files() -> None:
    recs = _records()
    assert select_sections(recs, SubsetConfig(share=0.3)).sections_kept == 4  # ceil(0.3 · 11)
    result = select_sections(recs, SubsetConfig(max_sections=7, rare_share=0.0))
    assert result.sections_kept == 7 and {k.reason for k in result.kept} == {"informative"}
    assert [k.chunk_id for k in result.kept] == sorted(k.chunk_id for k in result.kept)
    everything = select_sections(recs, SubsetConfig(share=1.0))
    assert everything.sections_kept == 10  # all but the one too short


def test_a_section_too_short_is_never_kept_and_is_counted() -> None:
    result = select_sections(_records(), SubsetConfig(share=1.0, min_terms=5))
    assert "c20" not in result.kept_ids() and result.sections_too_short == 1
    assert result.sections_total == 11
    assert "choos" not in result.rare_sample  # nor does it feed the vocabularies


def test_selection_is_deterministic_and_recorded_with_scores() -> None:
    a = select_sections(_records(), SubsetConfig(max_sections=5))
    b = select_sections(list(_records()), SubsetConfig(max_sections=5))
    assert a == b
    back = SubsetResult.model_validate_json(a.model_dump_json())
    assert back == a
    for k in a.kept:
        assert k.informative_score >= 0 and k.rare_score >= 0 and 1 <= len(k.top_terms) <= 5
    assert "kept" not in a.summary() and a.summary()["sections_kept"] == 5


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="rare_terms"):
        SubsetConfig(rare_terms=0)
    with pytest.raises(ValidationError, match="share"):
        SubsetConfig(share=0)
    assert SubsetConfig(rare_terms=0, rare_share=0).rare_terms == 0
    assert select_sections([], SubsetConfig()).kept == []

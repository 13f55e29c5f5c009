"""The optimised Markdown, clean-up and fingerprint paths give the reference results."""

from __future__ import annotations

import numpy as np
import pytest
import reference_impl as ref
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from docllm.ingest import dedup
from docllm.ingest.exceptions import BinaryContentError
from docllm.ingest.markdown import clean_inline, clean_many, parse_markdown
from docllm.ingest.sniff import decode_text
from docllm.ingest.text import normalize_prose

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters each fast path treats specially, mixed with arbitrary text.
_tricky = st.sampled_from(
    [
        "\\",
        "\\\\",
        "\\.",
        "\\`",
        "`",
        "``",
        "`a\\b`",
        '<a name="x"></a>',
        "<A NAME='y'></a>",
        "![\\[Image NOT FOUND\\]](i.png)",
        '![alt *x*](p.png "t")',
        "<!--",
        "-->",
        " ",
        "  ",
        "\t",
        " \n",
        "\n",
        "\n\n",
        "\u00a0",
        "\u1680",
        "\u3000",
        "\u200b",
        "\u00ad",
        "\ufeff",
        "\x07",
        "\x85",
        "ﬁ",
        "e\u0301",
        "\ue000",
        "\ue001",
        "#",
        "## ",
        "```",
        "~~~",
        "    ```",
        "``` x`y",
        "* ",
        "1. ",
        "[ Python ]",
        "é",
        "中文",
    ]
)
_text = st.lists(
    st.one_of(_tricky, st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)), max_size=40
).map("".join)


@_settings
@given(text=_text)
@example(text="0\t \n\\")  # a tab behind the trailing spaces: once left behind by the fast path
def test_prose_clean_up_matches_the_reference_rules(text: str) -> None:
    assert clean_inline(text) == ref.clean_inline(text)
    assert normalize_prose(text) == ref.normalize_prose(text)


@_settings
@given(texts=st.lists(_text, max_size=8))
def test_batch_clean_up_equals_cleaning_one_by_one(texts: list[str]) -> None:
    assert clean_many(texts) == [clean_inline(t) for t in texts]


@_settings
@given(text=_text)
def test_regex_scanner_gives_the_same_blocks_as_the_line_scanner(text: str) -> None:
    assert parse_markdown(text) == ref.parse_markdown(text)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (r"a\\.b", r"a\.b"),  # an escaped backslash, then a plain dot
        (r"a\\\.b", r"a\.b"),  # escaped backslash, escaped dot
        # Code spans are found first: the backtick after the backslash opens one.
        (r"x \` `y\.`", r"x \` `y.`"),
        (r"`a\.b` c\.", r"`a\.b` c."),  # a backslash inside a span stays
        ("\ue001\\.", "\ue001."),  # the pair sentinel itself in the text
    ],
)
def test_backslash_escapes_follow_the_left_to_right_rule(source: str, expected: str) -> None:
    assert clean_inline(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a  b", "a b"),
        ("a\n  - nested", "a\n  - nested"),  # indentation at a line start is structure
        ("a \t b\t\nc", "a b\nc"),
        ("a" + " " * 9 + "\nb", "a\nb"),  # more trailing blanks than the replace passes
        ("x\u00a0\u00a0y\u3000z", "x y z"),
    ],
)
def test_whitespace_rules_hold_on_the_fast_paths(source: str, expected: str) -> None:
    assert normalize_prose(source) == expected == ref.normalize_prose(source)


def test_control_characters_are_removed_from_non_ascii_prose_too() -> None:
    assert normalize_prose("caf\u00e9\x07 ok") == "café ok"


def test_structure_only_parse_keeps_markdown_source_of_prose_and_headings() -> None:
    text = '# Title<a name="t"></a>\n\nUse \\(this\\)  now.\n\n```\nx = 1\n```\n'
    raw = parse_markdown(text, clean=False)
    cleaned = parse_markdown(text)
    assert [b.kind for b in raw] == [b.kind for b in cleaned] == ["heading", "text", "code"]
    assert raw[0].text == 'Title<a name="t"></a>' and cleaned[0].text == "Title"
    assert raw[1].text == "Use \\(this\\)  now." and cleaned[1].text == "Use (this) now."
    assert raw[2].text == cleaned[2].text == "```\nx = 1\n```"


@settings(max_examples=80, deadline=None)
@given(text=_text)
def test_minhash_shingles_the_case_folded_whitespace_free_text(text: str) -> None:
    data = ref.collapsed_shingle_input(text)
    sig = dedup.minhash_signature(text)
    assert len(sig) == dedup.NUM_PERM
    assert sig == dedup.minhash_signature(text.upper() if text.isascii() else text)
    if len(data) >= 16:
        # Every shingle is a 16-byte window of ``data``: recompute them one by one.
        words = [int.from_bytes(data[i : i + 8], "little") for i in range(len(data) - 7)]
        mask = (1 << 64) - 1
        shingles = np.array(
            [
                ((words[i] * int(dedup._MIX_A)) & mask) ^ ((words[i + 8] * int(dedup._MIX_B)) & mask)
                for i in range(len(words) - 8)
            ],
            dtype=np.uint64,
        )
        sampled = shingles[shingles < np.uint64(1 << 60)]
        shingles = sampled if sampled.size else shingles
        expected = [
            min(((int(x >> np.uint64(32)) * int(a) + int(b)) & mask) >> 32 for x in shingles)
            for a, b in zip(dedup._PERM_A, dedup._PERM_B, strict=True)
        ]
        assert sig == expected


def test_near_duplicate_estimate_is_high_and_unrelated_is_low() -> None:
    base = " ".join(f"Step {i}: configure the bucket policy for account {i * 7}." for i in range(60))
    edited = base.replace("Step 30:", "Step thirty:")
    other = " ".join(f"Lambda function {i} reads events from queue {i * 3} and retries." for i in range(60))
    sig = dedup.minhash_signature(base)
    assert dedup.jaccard(sig, dedup.minhash_signature(edited)) >= 0.85
    assert dedup.jaccard(sig, dedup.minhash_signature(other)) <= 0.2


def test_text_of_replacement_characters_is_rejected_as_binary() -> None:
    with pytest.raises(BinaryContentError):
        decode_text(("\ufffd" * 50 + "abc").encode("utf-8"))
    assert decode_text(b"plain text\x07 with one bell")[0].startswith("plain")

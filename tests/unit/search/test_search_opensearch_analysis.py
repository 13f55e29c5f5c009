"""The OpenSearch analysis chain of the adapter, checked on its own definition.

The emulator analyses text with the Python analyzer, so the chain in
``index_settings()`` (what a real cluster would run) is never exercised there.
This file interprets that chain the way the OpenSearch documentation (and,
where the documentation is silent, the Lucene source it points to) says each
component behaves, for exactly the options the settings use, and asserts the
tokens it yields for representative identifiers. A reference interpretation is
not OpenSearch: the last word belongs to ``_analyze`` on a real cluster
(``docs/retrieval.md`` lists it among what still needs one).

Sources, per component:

- ``pattern_replace`` char filter:
  https://docs.opensearch.org/latest/analyzers/character-filters/pattern-replace-character-filter/
- ``pattern`` tokenizer (a Java regex; ``group`` selects the capture group, 0 = the whole match):
  https://docs.opensearch.org/latest/analyzers/tokenizers/pattern/ and
  https://docs.oracle.com/javase/8/docs/api/java/util/regex/Pattern.html
- ``word_delimiter_graph``: https://docs.opensearch.org/latest/analyzers/token-filters/word-delimiter-graph/,
  which uses Lucene's WordDelimiterGraphFilter; the exact split and catenation rules are in
  https://lucene.apache.org/core/9_12_0/analysis/common/org/apache/lucene/analysis/miscellaneous/WordDelimiterGraphFilter.html
  and its source (``WordDelimiterIterator.isBreak``, ``WordDelimiterGraphFilter.bufferWordParts``)
- ``lowercase``: https://docs.opensearch.org/latest/analyzers/token-filters/lowercase/
- ``stop``: https://docs.opensearch.org/latest/analyzers/token-filters/stop/
- ``length``: https://docs.opensearch.org/latest/analyzers/token-filters/length/
- ``keyword_marker``: https://docs.opensearch.org/latest/analyzers/token-filters/keyword-marker/
  (``keywords_pattern`` is a Java regex; Lucene's PatternKeywordMarkerFilter marks a token when
  the pattern ``matches()`` the whole token)
- ``stemmer`` with ``language: english``: https://docs.opensearch.org/latest/analyzers/token-filters/stemmer/
  (``english`` is the Porter stemmer, Lucene's PorterStemFilter:
  https://www.elastic.co/guide/en/elasticsearch/reference/7.10/analysis-stemmer-tokenfilter.html)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import Stemmer

from docllm.adapters.aws.opensearch import ANALYZER, index_mappings, index_settings
from docllm.search.analyzer import STOPWORDS, analyze

SETTINGS = index_settings()
ANALYSIS = SETTINGS["analysis"]

# -- the shape of the settings ---------------------------------------------------------------

#: Documented parameters of each component type the settings use (pages cited in the module docstring).
DOCUMENTED_PARAMS: dict[str, set[str]] = {
    "pattern_replace": {"pattern", "replacement", "flags"},
    "pattern": {"pattern", "flags", "group"},
    "word_delimiter_graph": {
        "adjust_offsets",
        "catenate_all",
        "catenate_numbers",
        "catenate_words",
        "generate_number_parts",
        "generate_word_parts",
        "ignore_keywords",
        "preserve_original",
        "protected_words",
        "protected_words_path",
        "split_on_case_change",
        "split_on_numerics",
        "stem_english_possessive",
        "type_table",
        "type_table_path",
    },
    "stop": {"stopwords", "stopwords_path", "ignore_case", "remove_trailing"},
    "keyword_marker": {"ignore_case", "keywords", "keywords_path", "keywords_pattern"},
    "stemmer": {"language", "name"},
    "length": {"min", "max"},
}
#: Filters OpenSearch defines by name, usable in an analyzer without a definition.
BUILTIN_FILTERS = {"lowercase", "uppercase", "asciifolding", "trim", "porter_stem", "kstem", "stop", "unique"}
#: The ``_english_`` stop set as the stop-filter page lists it.
# fmt: off
DOCUMENTED_ENGLISH_STOPWORDS = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with",
]
# fmt: on


def test_every_component_is_a_known_type_with_documented_options_only() -> None:
    for kind in ("char_filter", "tokenizer", "filter"):
        for name, spec in ANALYSIS[kind].items():
            assert spec["type"] in DOCUMENTED_PARAMS, f"{kind} {name}: type {spec['type']!r} not checked here"
            extra = set(spec) - {"type"} - DOCUMENTED_PARAMS[spec["type"]]
            assert not extra, f"{kind} {name}: undocumented options {sorted(extra)}"


def test_every_referenced_component_is_defined_and_every_text_field_uses_a_defined_analyzer() -> None:
    for name, analyzer in ANALYSIS["analyzer"].items():
        assert analyzer["type"] == "custom", name
        assert analyzer["tokenizer"] in ANALYSIS["tokenizer"], name
        assert set(analyzer.get("char_filter", [])) <= set(ANALYSIS["char_filter"]), name
        for f in analyzer["filter"]:
            assert f in ANALYSIS["filter"] or f in BUILTIN_FILTERS, (
                f"{name}: filter {f!r} is neither defined nor built in"
            )
    for field, spec in index_mappings()["properties"].items():
        if spec["type"] == "text":
            assert spec["analyzer"] in ANALYSIS["analyzer"], field


def test_filter_order_is_the_one_the_options_assume() -> None:
    chain = ANALYSIS["analyzer"][ANALYZER]["filter"]
    types = [ANALYSIS["filter"].get(f, {"type": f})["type"] for f in chain]
    # Splitting needs the original case (split_on_case_change); the stop list and the keyword
    # pattern [^a-z] are lower case and case-sensitive (ignore_case defaults to false); a
    # keyword_marker only protects from filters that come after it.
    assert types.index("word_delimiter_graph") < types.index("lowercase")
    assert types.index("lowercase") < types.index("stop")
    assert types.index("lowercase") < types.index("keyword_marker") < types.index("stemmer")


def test_the_stop_list_is_lucenes_english_set_as_documented() -> None:
    (stop,) = (f for f in ANALYSIS["filter"].values() if f["type"] == "stop")
    assert sorted(stop["stopwords"]) == sorted(DOCUMENTED_ENGLISH_STOPWORDS) == sorted(STOPWORDS)


# -- a reference interpretation of exactly these components ----------------------------------

_JAVA_SPACE = " \\t\\n\\x0b\\f\\r"  # Java's \s: [ \t\n\x0B\f\r]
_JAVA_WORD = "A-Za-z0-9_"  # Java's \w without UNICODE_CHARACTER_CLASS: [a-zA-Z_0-9]


def java_regex(pattern: str) -> re.Pattern[str]:
    """Translate the few Java regex constructs the settings use into Python ``re``, refusing others.

    ``[\\p{L}\\p{N}...]`` (a Unicode letter or number, or one of ...): Python's ``[^\\W_]`` is
    exactly its letters and numbers. ``\\w`` and ``\\s`` are ASCII classes in Java by default.
    """

    def letter_or_number_class(m: re.Match[str]) -> str:
        rest = m.group(1)
        return r"[^\W_]" if not rest else rf"(?:[^\W_]|[{rest}])"

    py = re.sub(r"\[\\p\{L\}\\p\{N\}((?:[^\]\\]|\\.)*)\]", letter_or_number_class, pattern)
    py = py.replace(r"[^\w\s]", f"[^{_JAVA_WORD}{_JAVA_SPACE}]")
    leftovers = re.findall(r"\\p\{|\\[wsdWSD]", py.replace(r"[^\W_]", ""))
    assert not leftovers, f"untranslated Java construct in {pattern!r}: {leftovers}"
    return re.compile(py)


def pattern_replace(spec: dict[str, Any], text: str) -> str:
    assert set(spec) <= {"type", "pattern", "replacement"}  # no flags: the reference would ignore them
    return java_regex(spec["pattern"]).sub(spec["replacement"], text)


def pattern_tokenizer(spec: dict[str, Any], text: str) -> list[str]:
    assert spec.get("group") == 0 and "flags" not in spec  # tokens are whole matches
    return [m.group(0) for m in java_regex(spec["pattern"]).finditer(text)]


# WordDelimiterIterator's character classes and its break rule (Lucene source, quoted in spirit).
LOWER, UPPER, DIGIT, DELIM = 0x01, 0x02, 0x04, 0x08
ALPHA = LOWER | UPPER


def char_type(ch: str) -> int:
    if ch.islower():
        return LOWER
    if ch.isupper():
        return UPPER
    if ch.isdigit():
        return DIGIT
    return ALPHA if ch.isalpha() else DELIM  # other letters count as ALPHA, everything else delimits


def is_break(last: int, cur: int, *, split_on_case_change: bool, split_on_numerics: bool) -> bool:
    if cur & last:
        return False
    if not split_on_case_change and last & ALPHA and cur & ALPHA:
        return False
    if last & UPPER and cur & ALPHA:  # UPPER -> letter never splits: "HTTPServer" stays whole
        return False
    return split_on_numerics or not ((last & ALPHA and cur & DIGIT) or (last & DIGIT and cur & ALPHA))


def subwords(token: str, opts: dict[str, Any]) -> list[tuple[int, int]]:
    """``(start, end)`` of each subword: split on delimiters, and at breaks between characters."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(token)
    while i < n:
        if char_type(token[i]) & DELIM:
            i += 1
            continue
        j = i + 1
        while j < n and not (char_type(token[j]) & DELIM):
            if is_break(
                char_type(token[j - 1]),
                char_type(token[j]),
                split_on_case_change=opts.get("split_on_case_change", True),
                split_on_numerics=opts.get("split_on_numerics", True),
            ):
                break
            j += 1
        out.append((i, j))
        i = j
    return out


def word_delimiter_graph(spec: dict[str, Any], token: str) -> list[str]:
    """One token through WordDelimiterGraphFilter with ``spec``'s options, in emission order."""
    handled = {
        "type",
        "preserve_original",
        "split_on_case_change",
        "split_on_numerics",
        "generate_word_parts",
        "generate_number_parts",
        "catenate_words",
        "stem_english_possessive",
    }
    assert set(spec) <= handled, f"the reference does not interpret {sorted(set(spec) - handled)}"
    assert spec.get("stem_english_possessive") is False  # the possessive rule is not modelled
    preserve = spec.get("preserve_original", False)
    gen_words, gen_numbers = spec.get("generate_word_parts", True), spec.get("generate_number_parts", True)
    parts = subwords(token, spec)
    if not parts:  # only delimiters: swallowed unless the original is preserved
        return [token] if preserve else []
    if parts[0] == (0, len(token)):  # "word of no delimiters": returned as it is, once
        return [token]

    def word_type(start: int) -> int:  # a subword's type is its first character's (LOWER/UPPER -> ALPHA)
        t = char_type(token[start])
        return ALPHA if t & ALPHA else t

    def generate(t: int) -> bool:
        return bool((gen_words and t & ALPHA) or (gen_numbers and t & DIGIT))

    buffered: list[tuple[int, int, str]] = []  # (start, end, text); sorted like Lucene's PositionSorter
    run: list[tuple[int, int]] = []

    def flush() -> None:
        if run and (len(run) != 1 or not generate(ALPHA)):
            buffered.append((run[0][0], run[-1][1], "".join(token[s:e] for s, e in run)))
        run.clear()

    for start, end in parts:
        t = word_type(start)
        if run and not (t & ALPHA):  # an incompatible subword ends the run of word parts
            flush()
        if spec.get("catenate_words", False) and t & ALPHA:
            run.append((start, end))
        if generate(t):
            buffered.append((start, end, token[start:end]))
    flush()
    buffered.sort(key=lambda p: (p[0], -p[1]))  # stable: smaller start first, then the longer one
    return ([token] if preserve else []) + [text for _, _, text in buffered]


_porter = Stemmer.Stemmer("porter")


def token_filter(spec: dict[str, Any]) -> Callable[[list[tuple[str, bool]]], list[tuple[str, bool]]]:
    """A filter over ``(token, is_keyword)`` pairs."""
    kind = spec["type"]
    if kind == "word_delimiter_graph":
        return lambda ts: [(part, False) for t, _ in ts for part in word_delimiter_graph(spec, t)]
    if kind == "lowercase":
        return lambda ts: [(t.lower(), k) for t, k in ts]
    if kind == "stop":
        assert not spec.get("ignore_case", False)
        words = set(spec["stopwords"])
        return lambda ts: [(t, k) for t, k in ts if t not in words]
    if kind == "length":
        lo, hi = spec.get("min", 0), spec.get("max", 2**31 - 1)
        return lambda ts: [(t, k) for t, k in ts if lo <= len(t) <= hi]
    if kind == "keyword_marker":
        assert set(spec) == {"type", "keywords_pattern"}
        pattern = java_regex(spec["keywords_pattern"])
        return lambda ts: [(t, k or pattern.fullmatch(t) is not None) for t, k in ts]
    if kind == "stemmer":
        assert spec.get("language", spec.get("name", "english")) == "english"
        return lambda ts: [(t if k else _porter.stemWord(t), k) for t, k in ts]
    raise AssertionError(f"no reference for filter type {kind!r}")


def chain(text: str, analyzer: str = ANALYZER) -> list[str]:
    """``text`` through the analyzer named in the settings, component by component."""
    spec = ANALYSIS["analyzer"][analyzer]
    for name in spec.get("char_filter", []):
        text = pattern_replace(ANALYSIS["char_filter"][name], text)
    tokens = [(t, False) for t in pattern_tokenizer(ANALYSIS["tokenizer"][spec["tokenizer"]], text)]
    for name in spec["filter"]:
        tokens = token_filter(ANALYSIS["filter"].get(name, {"type": name}))(tokens)
    return [t for t, _ in tokens]


# -- component by component -------------------------------------------------------------------


def test_char_filter_removes_markdown_escapes_before_punctuation_only() -> None:
    spec = ANALYSIS["char_filter"]["docllm_md_escape"]
    assert pattern_replace(spec, r"versioning\-suspended \(PUT\)") == "versioning-suspended (PUT)"
    assert pattern_replace(spec, r"C:\new \ path") == r"C:\new \ path"  # before a word character or a space: kept


def test_tokenizer_keeps_identifiers_whole_and_drops_leading_dashes_and_trailing_punctuation() -> None:
    spec = ANALYSIS["tokenizer"]["docllm_compound"]
    text = "Grant s3:PutObject on arn:aws:s3:::bucket/key, with --dry-run. See PutBucketVersioning (EC2, 3.11.2)."
    assert pattern_tokenizer(spec, text) == [
        "Grant",
        "s3:PutObject",
        "on",
        "arn:aws:s3:::bucket/key",
        "with",
        "dry-run",
        "See",
        "PutBucketVersioning",
        "EC2",
        "3.11.2",
    ]


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        # preserve_original first; then by position, the longer of two at one start first; the run of
        # word parts ("s3" is a word part: a subword's type is its first character's) is catenated.
        ("s3:PutObject", ["s3:PutObject", "s3PutObject", "s3", "Put", "Object"]),
        # camelCase: split at lower->upper; catenate_words rebuilds the original, so it comes twice.
        ("PutBucketVersioning", ["PutBucketVersioning", "PutBucketVersioning", "Put", "Bucket", "Versioning"]),
        ("dry-run", ["dry-run", "dryrun", "dry", "run"]),
        (
            "arn:aws:s3:::bucket/key",
            ["arn:aws:s3:::bucket/key", "arnawss3bucketkey", "arn", "aws", "s3", "bucket", "key"],
        ),
        # split_on_numerics false: no split between letters and digits, so one subword: returned as is.
        ("EC2", ["EC2"]),
        ("EC2Instance", ["EC2Instance"]),
        # upper -> lower never splits, so an acronym run stays glued to the next word.
        ("HTTPServer", ["HTTPServer"]),
        # number parts are generated but not catenated (catenate_numbers is off).
        ("3.11.2", ["3.11.2", "3", "11", "2"]),
    ],
)
def test_word_delimiter_graph_on_representative_tokens(token: str, parts: list[str]) -> None:
    assert word_delimiter_graph(ANALYSIS["filter"]["docllm_parts"], token) == parts


def test_length_filter_drops_tokens_over_64_characters() -> None:
    spec = ANALYSIS["filter"]["docllm_long"]
    assert token_filter(spec)([("a" * 64, False), ("b" * 65, False)]) == [("a" * 64, False)]


def test_keyword_marker_protects_every_token_that_is_not_plain_lowercase_letters() -> None:
    marker = token_filter(ANALYSIS["filter"]["docllm_keep_identifiers"])
    stem = token_filter(ANALYSIS["filter"]["docllm_stem"])
    tokens = [(t, False) for t in ["buckets", "versioning", "s3:putobject", "dry-run", "ec2", "3.11.2", "café"]]
    assert [t for t, _ in stem(marker(tokens))] == [
        "bucket",
        "version",
        "s3:putobject",
        "dry-run",
        "ec2",
        "3.11.2",
        "café",
    ]


# -- the whole chain, against the embedded Python analyzer ------------------------------------

#: text -> (the chain's terms, in order; what the Python analyzer yields instead).
WHOLE_CHAIN: dict[str, tuple[list[str], list[str]]] = {
    "Enable versioning on the buckets": (["enabl", "version", "bucket"], ["enabl", "version", "bucket"]),
    "3.11.2": (["3.11.2", "3", "11", "2"], ["3.11.2", "3", "11", "2"]),
    "EC2": (["ec2"], ["ec2"]),
    # The chain has no term for the camelCase segment alone ("putobject"), but a catenation of
    # every word part ("s3putobject"): a document with s3:PutObject does not match the query
    # "PutObject" on that term, as it does in the embedded engine.
    "s3:PutObject": (
        ["s3:putobject", "s3putobject", "s3", "put", "object"],
        ["s3:putobject", "s3", "putobject", "put", "object"],
    ),
    # Same terms; the chain emits the whole word twice (original + catenation). Whether Lucene then
    # counts term frequency 2 is for a real cluster's _termvectors to show.
    "PutBucketVersioning": (
        ["putbucketvers", "putbucketvers", "put", "bucket", "version"],
        ["putbucketvers", "put", "bucket", "version"],
    ),
    "--dry-run": (["dry-run", "dryrun", "dry", "run"], ["dry-run", "dry", "run"]),
    "arn:aws:s3:::bucket/key": (
        ["arn:aws:s3:::bucket/key", "arnawss3bucketkey", "arn", "aw", "s3", "bucket", "kei"],
        ["arn:aws:s3:::bucket/key", "arn", "aw", "s3", "bucket", "kei"],
    ),
    r"versioning\-suspended": (
        ["versioning-suspended", "versioningsuspend", "version", "suspend"],
        ["versioning-suspended", "version", "suspend"],
    ),
    # No split of an acronym run or at a digit->upper boundary in the chain; the Python analyzer
    # splits both ("HTTP" + "Server", "EC2" + "Instance").
    "HTTPServer": (["httpserver"], ["httpserver", "http", "server"]),
    "EC2Instance": (["ec2instance"], ["ec2instance", "ec2", "instanc"]),
}


@pytest.mark.parametrize("text", list(WHOLE_CHAIN))
def test_whole_chain_terms_and_where_they_differ_from_the_python_analyzer(text: str) -> None:
    expected_chain, expected_python = WHOLE_CHAIN[text]
    assert chain(text) == expected_chain
    assert analyze(text) == expected_python  # pins the difference: a change to either side shows here


def test_the_chain_and_the_python_analyzer_agree_on_prose() -> None:
    text = "The index function replaces the chunks of a document when its version changes."
    assert chain(text) == analyze(text)

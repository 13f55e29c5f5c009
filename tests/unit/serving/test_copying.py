"""Copy-constrained decoding: every continuation is a span of a source, from a sentence start."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docllm.ports.inference import GenerationParams
from docllm.serving.copying import NO_EOS, SENTENCE_END, CopyConstraint, copy_choices, sentence_ends
from docllm.serving.engine import LocalEngine

SOURCES = [
    "Versioning keeps every version of an object.",
    "Lifecycle rules expire old versions.",
    "A bucket is a container for objects.",
    "Use the console to enable versioning on a bucket.",
]


def test_a_copy_starts_only_at_a_source_start_and_ends_only_at_sentence_ends() -> None:
    c = CopyConstraint([[10, 11, 12, 13, 14]], sentence_ends=[{1, 4}], eos_id=0)
    assert c.allowed() == {10}  # not 12, after the guessed sentence end: only the caller's starts
    c.advance(10)
    assert c.allowed() == {11}  # mid-sentence: no end yet
    c.advance(11)
    assert c.allowed() == {12, 0}  # after "." the copy may stop or go on
    c.advance(12)
    c.advance(13)
    c.advance(14)
    assert c.allowed() == {0}  # the source ended: only the end


def test_a_span_common_to_two_sources_may_continue_in_either() -> None:
    c = CopyConstraint([[5, 6, 7], [5, 6, 9]], sentence_ends=[set(), set()], eos_id=0)
    c.advance(5)
    c.advance(6)
    assert c.allowed() == {7, 9}
    c.advance(9)
    assert c.allowed() == {0}


def test_without_an_eos_nothing_is_allowed_once_the_source_ends() -> None:
    c = CopyConstraint([[5]], sentence_ends=[{0}], eos_id=NO_EOS)
    c.advance(5)
    assert c.allowed() == set()


def test_sentence_ends_follow_the_tokens_text() -> None:
    pieces = {1: "Use", 2: " it", 3: ".", 4: " Then", 5: " stop", 6: "?"}
    assert sentence_ends([1, 2, 3, 4, 5, 6], pieces.__getitem__) == {2, 5}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab .:;!?\n", max_size=30), max_size=4))
def test_copy_choices_are_source_prefixes_ending_a_sentence_or_whole_sources(sources: list[str]) -> None:
    choices = copy_choices(sources)
    assert len(choices) == len(set(choices)) and all(choices)
    for choice in choices:
        whole = [s.strip() for s in sources if s.strip() == choice]
        ending = [s for s in sources if s.strip().startswith(choice) and choice.endswith(SENTENCE_END)]
        assert whole or ending
    assert {s.strip() for s in sources if s.strip()} <= set(choices)


@given(
    sources=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=12), min_size=1, max_size=4),
    choices=st.lists(st.integers(0, 1000), max_size=20),
)
def test_any_path_through_the_allowed_tokens_is_a_prefix_of_a_source(
    sources: list[list[int]], choices: list[int]
) -> None:
    ends = [{p for p, t in enumerate(s) if t == 6} for s in sources]
    c = CopyConstraint(sources, sentence_ends=ends, eos_id=0)
    out: list[int] = []
    for pick in choices:
        allowed = sorted(c.allowed())
        token = allowed[pick % len(allowed)]
        if token == 0:
            break
        c.advance(token)
        out.append(token)
    assert not out or any(src[: len(out)] == out for src in sources), (out, sources)


@pytest.fixture
def engine(tiny_export: Path) -> LocalEngine:
    e = LocalEngine.from_export(tiny_export, model_name="v1", threads=1, max_batch=4, max_queue=8)
    yield e  # type: ignore[misc]
    e.close()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_engine_copies_a_sentence_of_a_source_and_free_generation_does_not(
    engine: LocalEngine, temperature: float
) -> None:
    # Random weights: unconstrained, the model strings together words in no source's order.
    params = GenerationParams(max_tokens=40, temperature=temperature, seed=3)
    free = engine.generate("### Answer:", params).text.strip()
    copied = engine.generate("### Answer:", params.model_copy(update={"copy_from": SOURCES})).text.strip()
    assert copied and any(copied in s for s in SOURCES), copied
    assert not any(free in s for s in SOURCES), free
    assert any(s.startswith(copied) for s in SOURCES), copied


def test_copied_requests_batch_beside_free_ones_without_changing_them(engine: LocalEngine) -> None:
    params = GenerationParams(max_tokens=20)
    alone = engine.generate("A bucket is", params).text
    handles = [
        engine.submit("A bucket is", params),
        engine.submit("### Answer:", params.model_copy(update={"copy_from": SOURCES})),
    ]
    free, copied = (h.result().text for h in handles)
    assert free == alone
    assert any(s.startswith(copied.strip()) for s in SOURCES)

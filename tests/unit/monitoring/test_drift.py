"""Drift signals (issue 16, Deliver 2): out-of-vocabulary rate under the model's tokenizer, questions
under the relevance floor, and the service-mix shift as a Jensen–Shannon divergence."""

from __future__ import annotations

import math

import pytest

from docllm.answers.retrieve import MIN_COVERAGE
from docllm.monitoring.drift import SentencePieceTokenizer, low_score, oov_rate, service_mix_divergence
from tests.unit.api.fakes import tokenizer_model


@pytest.fixture(scope="module")
def tokenizer() -> SentencePieceTokenizer:
    return SentencePieceTokenizer(tokenizer_model())


def test_words_the_tokenizer_was_trained_on_have_no_oov_pieces(tokenizer: SentencePieceTokenizer) -> None:
    assert oov_rate("open the bucket enable versioning", tokenizer) == 0.0


def test_unseen_characters_fall_back_to_byte_pieces_and_count(tokenizer: SentencePieceTokenizer) -> None:
    rate = oov_rate("桶", tokenizer)  # three UTF-8 bytes, each a byte-fallback piece
    assert rate is not None and rate > 50
    mixed = oov_rate("open the bucket 桶", tokenizer)
    assert mixed is not None and 0 < mixed < rate


def test_an_unknown_piece_counts_like_a_byte_piece() -> None:
    class Toy:
        def encode(self, text: str) -> list[int]:
            return [0 if w == "?" else 1 for w in text.split()]

        def is_unknown(self, piece: int) -> bool:
            return piece == 0

        def is_byte(self, piece: int) -> bool:
            return False

    assert oov_rate("a ? b ?", Toy()) == 50.0


def test_a_question_without_pieces_has_no_rate(tokenizer: SentencePieceTokenizer) -> None:
    assert oov_rate("", tokenizer) is None


def test_bytes_that_are_not_a_sentencepiece_model_are_refused() -> None:
    with pytest.raises(ValueError, match="SentencePiece"):
        SentencePieceTokenizer(b"not a model")


def test_low_score_is_100_under_the_answer_paths_floor_only() -> None:
    assert low_score(0.0) == 100.0
    assert low_score(MIN_COVERAGE - 0.01) == 100.0
    assert low_score(MIN_COVERAGE) == 0.0
    assert low_score(0.5, floor=0.4) == 0.0


def test_the_same_mix_does_not_diverge_whatever_the_volumes() -> None:
    assert service_mix_divergence({"s3": 2, "iam": 1}, {"s3": 200, "iam": 100}) == 0.0


def test_disjoint_mixes_diverge_fully() -> None:
    assert service_mix_divergence({"s3": 10}, {"iam": 4, "ec2": 6}) == 1.0


def test_the_divergence_is_symmetric_bounded_and_ignores_zero_counts() -> None:
    live, reference = {"s3": 8, "iam": 1, "ec2": 1}, {"s3": 2, "iam": 5, "ec2": 3, "kms": 0}
    forward = service_mix_divergence(live, reference)
    assert forward == pytest.approx(service_mix_divergence(reference, live))
    assert 0 < forward < 1
    assert forward == pytest.approx(service_mix_divergence(live, {k: v for k, v in reference.items() if v}))


def test_the_divergence_is_jensen_shannon_in_bits() -> None:
    # P = (3/4, 1/4), Q = (1/2, 1/2), M = (5/8, 3/8)
    p, q, m = (0.75, 0.25), (0.5, 0.5), (0.625, 0.375)

    def kl(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, b, strict=True))

    assert service_mix_divergence({"s3": 3, "iam": 1}, {"s3": 1, "iam": 1}) == pytest.approx((kl(p, m) + kl(q, m)) / 2)


@pytest.mark.parametrize(
    ("live", "reference"), [({}, {"s3": 1}), ({"s3": 1}, {}), ({"s3": 0}, {"s3": 1}), ({"s3": -1, "iam": 2}, {"s3": 1})]
)
def test_an_empty_or_negative_mix_is_refused(live: dict[str, int], reference: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        service_mix_divergence(live, reference)

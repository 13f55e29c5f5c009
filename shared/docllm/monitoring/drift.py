"""Drift signals: how far live questions are from what the serving model was trained and evaluated on.

Three measures, all pure (the answer route and the scheduled canary publish them as metrics,
:mod:`docllm.monitoring.names`):

* **Out-of-vocabulary rate** (:func:`oov_rate`): the share of a question's SentencePiece pieces that
  are the unknown piece or byte-fallback pieces (``<0xE2>``…) under the serving model's tokenizer.
  Our tokenizers are trained with byte fallback, so text they never saw (another script, new
  identifiers made of unseen characters) falls apart into byte pieces rather than ``<unk>``; both
  mean "the model has no piece for this". A character outside the vocabulary counts once per UTF-8
  byte, as the model sees it.
* **Low retrieval score** (:func:`low_score`): 100 when the question's best retrieved document stays
  under the answer path's relevance floor (its coverage of the question's terms,
  :data:`docllm.answers.retrieve.MIN_COVERAGE`), else 0; the average over a period is the share of
  questions the documentation does not seem to cover.
* **Service-mix shift** (:func:`service_mix_divergence`): the Jensen–Shannon divergence (base 2, so
  0..1) between the live mix of services asked about and the training split's mix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from docllm.answers.retrieve import MIN_COVERAGE


class PieceTokenizer(Protocol):
    """What :func:`oov_rate` needs of a tokenizer (a SentencePiece processor has it)."""

    def encode(self, text: str) -> list[int]: ...

    def is_unknown(self, piece: int) -> bool: ...

    def is_byte(self, piece: int) -> bool: ...


class SentencePieceTokenizer:
    """A :class:`PieceTokenizer` over a serialized SentencePiece model (``tokenizer.model``'s bytes).

    Raises
    ------
    ValueError
        The bytes are not a SentencePiece model.
    """

    def __init__(self, model: bytes) -> None:
        import sentencepiece as spm

        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model)
        except (RuntimeError, TypeError, OSError) as e:  # sentencepiece reports a bad proto as RuntimeError
            raise ValueError(f"not a SentencePiece model: {e}") from e

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._sp.encode(text)]

    def is_unknown(self, piece: int) -> bool:
        return bool(self._sp.is_unknown(piece))

    def is_byte(self, piece: int) -> bool:
        return bool(self._sp.is_byte(piece))


def oov_rate(question: str, tokenizer: PieceTokenizer) -> float | None:
    """Percent of the pieces of ``question`` that are unknown or byte-fallback pieces; None when the
    question has no piece at all.

    Examples
    --------
    >>> class Chars:  # a toy tokenizer: a piece per character, ``?`` unknown, digits as bytes
    ...     def encode(self, text): return [ord(c) for c in text]
    ...     def is_unknown(self, piece): return piece == ord("?")
    ...     def is_byte(self, piece): return chr(piece).isdigit()
    >>> oov_rate("ab?1", Chars())
    50.0
    >>> oov_rate("", Chars()) is None
    True
    """
    pieces = tokenizer.encode(question)
    if not pieces:
        return None
    unknown = sum(1 for p in pieces if tokenizer.is_unknown(p) or tokenizer.is_byte(p))
    return 100.0 * unknown / len(pieces)


def low_score(best_coverage: float, floor: float = MIN_COVERAGE) -> float:
    """100 when ``best_coverage`` is under ``floor`` (the question looks uncovered), else 0.

    Examples
    --------
    >>> low_score(0.5), low_score(0.6), low_score(1.0)
    (100.0, 0.0, 0.0)
    """
    return 100.0 if best_coverage < floor else 0.0


def service_mix_divergence(live: Mapping[str, int], reference: Mapping[str, int]) -> float:
    """Jensen–Shannon divergence, base 2 (0: the same mix, 1: no service in common), between two mixes
    of services given as counts (questions per service live; chunks or documents per service in the
    training split). Services with a zero count are absent.

    Raises
    ------
    ValueError
        A count is negative, or a mix has no positive count (nothing to compare: no traffic yet).

    Examples
    --------
    >>> service_mix_divergence({"s3": 5, "iam": 5}, {"s3": 50, "iam": 50})
    0.0
    >>> service_mix_divergence({"s3": 1}, {"iam": 3})
    1.0
    >>> round(service_mix_divergence({"s3": 3, "iam": 1}, {"s3": 1, "iam": 1}), 4)
    0.0488
    """
    p, q = _distribution(live, "live"), _distribution(reference, "reference")
    divergence = 0.0
    for service in p.keys() | q.keys():
        pi, qi = p.get(service, 0.0), q.get(service, 0.0)
        mi = (pi + qi) / 2
        if pi > 0:
            divergence += 0.5 * pi * math.log2(pi / mi)
        if qi > 0:
            divergence += 0.5 * qi * math.log2(qi / mi)
    return min(1.0, max(0.0, divergence))  # rounding can stray just outside 0..1


def _distribution(counts: Mapping[str, int], name: str) -> dict[str, float]:
    if any(c < 0 for c in counts.values()):
        raise ValueError(f"the {name} service mix has a negative count")
    total = sum(counts.values())
    if total <= 0:
        raise ValueError(f"the {name} service mix is empty: nothing to compare")
    return {service: c / total for service, c in counts.items() if c > 0}

"""The names of the serving metrics and their dimensions: one spelling for the emitters, the alarms in
``template.yaml`` and the local alarm evaluator (issue 16).

Every answer-path and canary metric is emitted twice, once per dimension set of
:func:`dimension_sets`: ``{Target}`` (what the ``docllm-<stage>-serving-*`` alarms watch) and
``{Target, Family, Version}`` (the same series per model version: canary and A/B comparisons, the
per-version alarm instances of the local evaluator). ``AskQuestions`` is the exception: one set,
``{Target, Service}`` (:func:`question_dimensions`), the live service mix. The sink adds ``service`` (Powertools does on
AWS, the local sink does the same), so one alarm definition matches both platforms.

Units are CloudWatch's (``MetricUnit`` values). :data:`HIGH_RESOLUTION` metrics are stored at one
second resolution (``MetricsSink.put(..., resolution=1)``): their alarms use 10-second periods.
"""

from __future__ import annotations

from typing import Final

# -- dimensions ---------------------------------------------------------------------------------
TARGET: Final = "Target"
FAMILY: Final = "Family"
VERSION: Final = "Version"
SERVICE: Final = "Service"
"""The documentation service a question was about (``AskQuestions``); not the sink's ``service``."""
NO_SERVICE: Final = "none"
"""The ``Service`` of a question that named none and retrieved nothing."""
UNKNOWN: Final = "unknown"
"""The ``Family`` of a version no model record names (never expected; better than dropping the point)."""

# -- the answer path (POST /v1/ask) -------------------------------------------------------------
ASK_REQUESTS: Final = "AskRequests"
"""Count, 1 per request that reached the answer path (errors included)."""
ASK_SERVER_ERRORS: Final = "AskServerErrors"
"""Count, 1 per 5xx (engine unavailable or failed, internal error; a stream broken by the engine)."""
ASK_CLIENT_ERRORS: Final = "AskClientErrors"
"""Count, 1 per 4xx (invalid body, unknown service, wrong model, rate limit or busy engine: 429)."""
ASK_LATENCY: Final = "AskLatency"
"""Milliseconds, end to end (answered and server-failed requests; not client errors)."""
ASK_TIME_TO_FIRST_TOKEN: Final = "AskTimeToFirstToken"
"""Milliseconds from the request to the model's first text delta (streamed answers)."""
ASK_TOKENS_PER_SECOND: Final = "AskTokensPerSecond"
"""Count/Second: completion tokens over the generation's duration (prefill included)."""
ASK_UNGROUNDED: Final = "AskUngrounded"
"""Count, 1/0 per answer: the draft held unsupported claims or could not be cited."""
ASK_ABSTAINED: Final = "AskAbstained"
"""Count, 1/0 per answer."""
ASK_RETRIEVAL_SCORE: Final = "AskRetrievalScore"
"""None: the best retrieved document's score (BM25), per answer."""

ASK_QUESTIONS: Final = "AskQuestions"
"""Count, 1 per answered question, on ``{Target, Service}`` only (:func:`question_dimensions`): the
live service mix the canary compares with the training split's (``DriftServiceShift``)."""

# -- drift --------------------------------------------------------------------------------------
DRIFT_OOV_RATE: Final = "DriftOovRate"
"""Percent: the question's pieces that are unknown or byte-fallback pieces under the model's tokenizer."""
DRIFT_LOW_SCORE: Final = "DriftLowScore"
"""Percent, 100/0 per answer: retrieval stayed under the relevance floor (Average = share of questions)."""
DRIFT_SERVICE_SHIFT: Final = "DriftServiceShift"
"""None: Jensen–Shannon divergence (base 2) of the live service mix vs the training split's (the canary run)."""

# -- the scheduled canary -----------------------------------------------------------------------
CANARY_ACCURACY: Final = "CanaryAccuracy"
"""Percent of the canary questions answered correctly."""
CANARY_QUESTIONS: Final = "CanaryQuestions"
"""Count of canary questions asked in a run."""

UNITS: Final[dict[str, str]] = {
    ASK_REQUESTS: "Count",
    ASK_SERVER_ERRORS: "Count",
    ASK_CLIENT_ERRORS: "Count",
    ASK_LATENCY: "Milliseconds",
    ASK_TIME_TO_FIRST_TOKEN: "Milliseconds",
    ASK_TOKENS_PER_SECOND: "Count/Second",
    ASK_UNGROUNDED: "Count",
    ASK_ABSTAINED: "Count",
    ASK_RETRIEVAL_SCORE: "None",
    ASK_QUESTIONS: "Count",
    DRIFT_OOV_RATE: "Percent",
    DRIFT_LOW_SCORE: "Percent",
    DRIFT_SERVICE_SHIFT: "None",
    CANARY_ACCURACY: "Percent",
    CANARY_QUESTIONS: "Count",
}
"""The CloudWatch unit of each metric."""

HIGH_RESOLUTION: Final = frozenset({ASK_REQUESTS, ASK_SERVER_ERRORS, ASK_LATENCY, ASK_UNGROUNDED})
"""Metrics whose alarms evaluate 10-second periods: stored at 1-second resolution."""


def resolution_of(name: str) -> int:
    """The storage resolution of metric ``name`` in seconds: 1 (high) or 60 (standard).

    Examples
    --------
    >>> resolution_of(ASK_LATENCY), resolution_of(ASK_ABSTAINED)
    (1, 60)
    """
    return 1 if name in HIGH_RESOLUTION else 60


def dimension_sets(target: str, family: str | None = None, version: str | None = None) -> list[dict[str, str]]:
    """The dimension sets of one data point: ``{Target}``, and ``{Target, Family, Version}`` when the
    version is known.

    Examples
    --------
    >>> dimension_sets("local", "tiny-s3", "tiny-s3-v2")
    [{'Target': 'local'}, {'Target': 'local', 'Family': 'tiny-s3', 'Version': 'tiny-s3-v2'}]
    >>> dimension_sets("local")
    [{'Target': 'local'}]
    """
    sets = [{TARGET: target}]
    if version:
        sets.append({TARGET: target, FAMILY: family or UNKNOWN, VERSION: version})
    return sets


def question_dimensions(target: str, service: str | None) -> dict[str, str]:
    """The one dimension set of ``AskQuestions``: ``{Target, Service}`` (:data:`NO_SERVICE` when unknown).

    Examples
    --------
    >>> question_dimensions("local", "s3"), question_dimensions("local", None)
    ({'Target': 'local', 'Service': 's3'}, {'Target': 'local', 'Service': 'none'})
    """
    return {TARGET: target, SERVICE: service or NO_SERVICE}

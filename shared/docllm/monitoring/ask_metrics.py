"""Metrics of ``POST /v1/ask``: one record per request, answered or not (issue 16, Deliver 1 and 2).

The route gathers what happened in an :class:`AskObservation` (the answer, when there is one; the
generation's timing, through :class:`TimedEngine`; the version an engine error names) and, once the
status is known, :func:`record_ask` emits it through the platform's metrics sink with the names of
:mod:`docllm.monitoring.names`, each data point under both dimension sets:

* every request: ``AskRequests`` 1, ``AskServerErrors`` and ``AskClientErrors`` 1 or 0 (zeros too, so
  that a period's Average *is* the error rate and a quiet period is not missing data);
  ``AskLatency`` unless the request was the client's fault (a refused request costs nothing and would
  pull the percentiles down);
* every answer (abstentions included): ``AskUngrounded``, ``AskAbstained``, ``AskRetrievalScore``,
  ``DriftLowScore``, ``DriftOovRate`` (when the serving version's tokenizer can be read),
  ``AskTokensPerSecond`` (when something was generated), ``AskTimeToFirstToken`` (streamed).
* every answer, once, on ``{Target, Service}`` alone: ``AskQuestions`` 1, ``Service`` being the
  request's ``service`` when it named one, else the service of the best retrieved document (the first
  segment of its key, ``<service>/<path>``), else ``none``: the live service mix of the scheduled
  canary's ``DriftServiceShift`` (:func:`question_service`).

Dimensions: ``Target`` is the platform's deploy target (``local`` on the local platform). ``Family``
and ``Version`` name the model that answered (the answer's ``model_version``). A request that failed
before any answer is attributed to a version only when that is unambiguous: the version the error
names (an engine error with a ``model_version`` attribute), else the target's endpoint record when it
serves one version and no canary; otherwise it counts under ``{Target}`` alone rather than under a
version that may not be the one that failed.

Nothing here may fail a request: :func:`record_ask` logs what went wrong and returns.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from docllm.answers.models import Answer
from docllm.monitoring import names
from docllm.monitoring.drift import PieceTokenizer, SentencePieceTokenizer, low_score, oov_rate
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.ports.metrics import MetricsSink
from docllm.ports.objects import split_uri

log = logging.getLogger(__name__)

MODELS_PK = "models"  # docllm.service_layer.jobs.MODELS_PK (not imported: it pulls the job machinery in)
ENDPOINTS_PK = "endpoints"  # docllm.service_layer.deploy.ENDPOINTS_PK
TOKENIZER_FILE = "tokenizer.model"
#: Tokenizers kept in memory (one per recently served version).
TOKENIZERS_KEPT = 4
#: How long a tokenizer that could not be read stays "unavailable" before it is tried again.
TOKENIZER_RETRY_S = 300.0
#: How long an endpoint record read for a failed request is reused (a flood of 429s reads it once a second).
ENDPOINT_TTL_S = 1.0
UNGROUNDED_REASONS = frozenset({"unsupported_claims", "no_citations"})


@dataclass
class AskObservation:
    """What one ``POST /v1/ask`` did, filled in while it is answered."""

    started: float = field(default_factory=time.perf_counter)
    question: str | None = None
    service: str | None = None
    """The service the request asked about (``AskRequest.service``), when it named one."""
    answer: Answer | None = None
    first_delta_at: float | None = None
    """``perf_counter`` time of the first text delta (streamed answers)."""
    generation_s: float | None = None
    completion_tokens: int | None = None
    error_version: str | None = None
    """The version an engine error named, when it did."""
    stream_failed: bool = False
    """The stream broke after its head was sent (a 200 on the wire, a server error in fact)."""
    disconnected: bool = False
    """The client went away while its answer streamed: neither an answer nor an error."""

    def note_error(self, error: BaseException) -> None:
        version = getattr(error, "model_version", None)
        if isinstance(version, str) and version:
            self.error_version = version


class TimedEngine(InferenceEngine):
    """``engine``, timing its generations into ``observation`` (time to first delta, tokens per second)."""

    def __init__(self, engine: InferenceEngine, observation: AskObservation) -> None:
        self._engine = engine
        self._obs = observation

    def info(self) -> ModelInfo:
        return self._engine.info()

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        start = time.perf_counter()
        generation = self._engine.generate(prompt, params)
        # A refused prompt is generated again, smaller: the last generation is the answer's.
        self._obs.generation_s = time.perf_counter() - start
        self._obs.completion_tokens = generation.completion_tokens
        return generation

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        start = time.perf_counter()
        deltas = 0
        inner = iter(self._engine.stream(prompt, params))
        try:
            for delta in inner:
                if self._obs.first_delta_at is None:
                    self._obs.first_delta_at = time.perf_counter()
                deltas += 1  # the engine sends a token per event (a character split over bytes: fewer)
                yield delta
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()  # the engine's connection: a client that went away cancels the generation
        self._obs.generation_s = time.perf_counter() - start
        self._obs.completion_tokens = deltas


def error_class(status: int, observation: AskObservation) -> str | None:
    """``"server"``, ``"client"`` or None (answered, or the client went away mid-stream).

    Examples
    --------
    >>> error_class(503, AskObservation()), error_class(429, AskObservation()), error_class(200, AskObservation())
    ('server', 'client', None)
    """
    if observation.stream_failed or status >= 500:
        return "server"
    if status >= 400:
        return "client"
    return None


def question_service(requested: str | None, answer: Answer) -> str | None:
    """The service a question was about: the one the request named, else the best retrieved document's
    (the answer's retrieval is best first; a key's first segment names its service, as
    :func:`docllm.service_layer.ingest.service_of` names it), else None — also when retrieval found
    nothing above the relevance floor: a question the documentation does not cover belongs to no service.

    Examples
    --------
    >>> from docllm.answers.models import RetrievedDocument
    >>> doc = RetrievedDocument(doc_key="iam/policies.md", version_id=None, title="t", score=1.0, coverage=1.0,
    ...                         chunk_ids=[])
    >>> a = Answer(question="q", answer="a", citations=[], grounded=True, unsupported=[], abstained=False,
    ...            model_version="v", latency_ms=1.0, retrieval=[doc])
    >>> nothing = a.model_copy(update={"retrieval": []})
    >>> off_topic = a.model_copy(update={"abstained": True, "reason": "no_relevant_documents"})
    >>> question_service("s3", a), question_service(None, a), question_service(None, nothing)
    ('s3', 'iam', None)
    >>> question_service(None, off_topic)
    """
    if requested:
        return requested
    if not answer.retrieval or answer.reason == "no_relevant_documents":
        return None  # nothing the documentation covers: the question counts as "none" (drift itself)
    head, sep, _ = answer.retrieval[0].doc_key.partition("/")
    return head if sep else "default"  # docllm.service_layer.ingest.service_of: the index's own naming


class AskMetrics:
    """Emits the metrics of one platform's answer path, with what it caches between requests: the
    family of each version, the tokenizer of recently served versions, the endpoint record."""

    def __init__(self, platform: Any) -> None:
        self._p = platform
        self.target: str = "local" if getattr(platform, "local", False) else str(platform.settings.deploy_target)
        self._families: dict[str, str] = {}
        self._tokenizers: OrderedDict[str, tuple[PieceTokenizer | None, float]] = OrderedDict()
        self._endpoint: tuple[dict[str, Any] | None, float] | None = None
        self._lock = threading.Lock()

    @property
    def sink(self) -> MetricsSink:
        return self._p.metrics

    # -- emission ----------------------------------------------------------------------------------
    def record(self, observation: AskObservation, status: int, *, now: float | None = None) -> None:
        """Emit the metrics of one request that ended with ``status`` (module docstring), then flush."""
        now = time.perf_counter() if now is None else now
        version, family = self._version_of(observation)
        dims = names.dimension_sets(self.target, family, version)
        kind = error_class(status, observation)

        def put(name: str, value: float) -> None:
            for d in dims:
                self.sink.put(name, value, unit=names.UNITS[name], dimensions=d, resolution=names.resolution_of(name))

        put(names.ASK_REQUESTS, 1)
        put(names.ASK_SERVER_ERRORS, 1 if kind == "server" else 0)
        put(names.ASK_CLIENT_ERRORS, 1 if kind == "client" else 0)
        if kind != "client" and not observation.disconnected:
            put(names.ASK_LATENCY, round((now - observation.started) * 1000.0, 3))
        answer = observation.answer
        if answer is not None and kind is None:
            put(names.ASK_UNGROUNDED, 1 if answer.reason in UNGROUNDED_REASONS else 0)
            put(names.ASK_ABSTAINED, 1 if answer.abstained else 0)
            put(names.ASK_RETRIEVAL_SCORE, max((d.score for d in answer.retrieval), default=0.0))
            put(names.DRIFT_LOW_SCORE, low_score(max((d.coverage for d in answer.retrieval), default=0.0)))
            if observation.first_delta_at is not None:
                put(names.ASK_TIME_TO_FIRST_TOKEN, round((observation.first_delta_at - observation.started) * 1000, 3))
            if observation.completion_tokens and observation.generation_s:
                put(names.ASK_TOKENS_PER_SECOND, observation.completion_tokens / observation.generation_s)
            question_dims = names.question_dimensions(self.target, question_service(observation.service, answer))
            self.sink.put(
                names.ASK_QUESTIONS,
                1,
                unit=names.UNITS[names.ASK_QUESTIONS],
                dimensions=question_dims,
                resolution=names.resolution_of(names.ASK_QUESTIONS),
            )
            if (
                observation.question
                and (tokenizer := self.tokenizer(answer.model_version)) is not None
                and (rate := oov_rate(observation.question, tokenizer)) is not None
            ):
                put(names.DRIFT_OOV_RATE, rate)
        self.sink.flush()

    # -- what answered -----------------------------------------------------------------------------
    def _version_of(self, observation: AskObservation) -> tuple[str | None, str | None]:
        if observation.answer is not None:
            version = observation.answer.model_version
            return version, self.family(version)
        if observation.error_version:
            return observation.error_version, self.family(observation.error_version)
        record = self._endpoint_record()
        if not record or record.get("canary") or not record.get("model_version"):
            return None, None  # nothing serves, or two versions do: which one failed is unknown
        version = str(record["model_version"])
        return version, str(record.get("family") or "") or self.family(version)

    def _endpoint_record(self) -> dict[str, Any] | None:
        now = time.monotonic()
        cached = self._endpoint
        if cached is not None and now - cached[1] < ENDPOINT_TTL_S:
            return cached[0]
        record = self._p.state.get(ENDPOINTS_PK, self.target)
        self._endpoint = (record, now)
        return record

    def family(self, version: str) -> str:
        """The family of ``version`` from its model record (cached: a version's family never changes)."""
        if version in self._families:
            return self._families[version]
        record = self._p.state.get(MODELS_PK, version) or {}
        family = str(record.get("family") or "")
        if not family:
            return names.UNKNOWN  # not cached: the record may be written yet
        self._families[version] = family
        return family

    def tokenizer(self, version: str) -> PieceTokenizer | None:
        """The SentencePiece tokenizer of ``version``'s export, or None when it cannot be read (then
        tried again after :data:`TOKENIZER_RETRY_S`)."""
        with self._lock:
            cached = self._tokenizers.get(version)
            if cached is not None and (cached[0] is not None or time.monotonic() - cached[1] < TOKENIZER_RETRY_S):
                self._tokenizers.move_to_end(version)
                return cached[0]
            tokenizer = self._load_tokenizer(version)
            self._tokenizers[version] = (tokenizer, time.monotonic())
            self._tokenizers.move_to_end(version)
            while len(self._tokenizers) > TOKENIZERS_KEPT:
                self._tokenizers.popitem(last=False)
            return tokenizer

    def _load_tokenizer(self, version: str) -> PieceTokenizer | None:
        try:
            record = self._p.state.get(MODELS_PK, version) or {}
            export_uri = str(record.get("export_uri") or "")
            if not export_uri:
                log.warning("no export recorded for model %s: no out-of-vocabulary rate for it", version)
                return None
            bucket, prefix = split_uri(export_uri if export_uri.endswith("/") else export_uri + "/")
            return SentencePieceTokenizer(self._p.objects.get(bucket, prefix + TOKENIZER_FILE))
        except Exception as e:  # unreadable, a tokenizer.json-only export, no sentencepiece: the rate is skipped
            log.warning("cannot load the tokenizer of model %s: no out-of-vocabulary rate for it: %s", version, e)
            return None


_METRICS: weakref.WeakKeyDictionary[Any, AskMetrics] = weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


def ask_metrics(platform: Any) -> AskMetrics:
    """The :class:`AskMetrics` of ``platform`` (one per platform object, for its caches)."""
    with _METRICS_LOCK:
        found = _METRICS.get(platform)
        if found is None:
            found = _METRICS[platform] = AskMetrics(platform)
        return found


def record_ask(platform: Any, observation: AskObservation, status: int) -> None:
    """:meth:`AskMetrics.record`, never raising: metrics must not fail the request they describe."""
    try:
        ask_metrics(platform).record(observation, status)
    except Exception as e:
        log.warning("could not record the metrics of a /v1/ask request: %s: %s", type(e).__name__, e)

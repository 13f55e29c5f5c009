"""Answer a question from the documentation: retrieve, prompt, generate, cite, check, or abstain.

Errors and abstentions are different things. An abstention is an answer ("The documentation does not
cover this.", ``abstained: true`` with a reason: :data:`docllm.answers.models.AbstainReason`); an error
is the platform failing to answer and propagates to the caller: the engine's errors
(:mod:`docllm.serving.exceptions`: busy → 429, unavailable or no model deployed → 503, a prompt the
engine refuses even after one smaller retry → 400), an unknown service
(:class:`~docllm.search.exceptions.UnknownServiceError`, 400), and a model other than the one asked for
(:class:`~docllm.answers.exceptions.ModelMismatchError`, 409).

Streaming (:func:`stream_answer`) sends the model's text as it comes; grounding and citations can only
be computed on the whole text, so the final event may abstain after the text was shown: a client
must replace what it displayed with the final event's ``answer``. Errors before the first event raise
as without streaming; the route turns a failure after it into an ``error`` event
(:meth:`AnswerEvent.failure`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from docllm.answers.cite import cite, split_sentences
from docllm.answers.exceptions import ModelMismatchError
from docllm.answers.ground import check_grounding, sources_of
from docllm.answers.models import NOT_COVERED, AbstainReason, Answer, RetrievedDocument
from docllm.answers.prompt import ELLIPSIS, RETRY_BUDGET_SHARE, STOP, BuiltPrompt, budget_for, build_prompt
from docllm.answers.retrieve import Retrieval, retrieve
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.ports.search import SearchIndex
from docllm.search.analyzer import analyze
from docllm.search.exceptions import UnknownServiceError
from docllm.serving.exceptions import PromptTooLongError

DEFAULT_PARAMS = GenerationParams(max_tokens=64)


class AnswerEvent(BaseModel):
    """One server-sent event of a streamed answer: ``delta`` events, then one ``answer`` event — or,
    when the platform fails after the stream began, one ``error`` event (``{message, status,
    request_id}``: the status the request would have had) that ends it."""

    event: Literal["delta", "answer", "error"]
    data: dict[str, Any]

    @classmethod
    def failure(cls, message: str, status: int, request_id: str) -> AnswerEvent:
        """The ``error`` event that ends a stream the platform could not finish.

        Examples
        --------
        >>> AnswerEvent.failure("retry", 503, "r-1").sse()
        'event: error\\ndata: {"message":"retry","status":503,"request_id":"r-1"}\\n\\n'
        """
        return cls(event="error", data={"message": message, "status": status, "request_id": request_id})

    def sse(self) -> str:
        """The event in ``text/event-stream`` framing."""
        data = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {data}\n\n"


class _Prepared(BaseModel):
    """What is known before generation: the model, what was retrieved, the prompt (None: abstain now)."""

    info: ModelInfo
    retrieval: Retrieval
    built: BuiltPrompt | None
    params: GenerationParams
    nothing_to_copy: bool = False


def answer_question(
    question: str,
    *,
    search: SearchIndex,
    engine: InferenceEngine,
    k: int = 5,
    service: str | None = None,
    model: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    copy: bool = True,
) -> Answer:
    """Answer ``question`` from ``search`` with ``engine`` (module docstring: errors vs abstentions).

    Raises
    ------
    EngineBusyError, EngineUnavailableError, NoModelDeployedError, PromptTooLongError
        From the engine (:mod:`docllm.serving.exceptions`).
    UnknownServiceError
        ``service`` names no indexed service.
    ModelMismatchError
        ``model`` is given and is not the deployed version.
    """
    start = time.perf_counter()
    prepared = _prepare(
        question, search=search, engine=engine, k=k, service=service, model=model, params=params, copy=copy
    )
    if prepared.built is None or prepared.nothing_to_copy:
        return _abstain(question, prepared, _not_generated(prepared), start)
    built, generation = _generate(question, prepared, engine)
    prepared = prepared.model_copy(update={"built": built})
    return _finish(
        question,
        prepared,
        generation.text,
        finish_reason=generation.finish_reason,
        start=start,
        model_version=generation.model,
        tokens=(generation.prompt_tokens, generation.completion_tokens),
    )


def stream_answer(
    question: str,
    *,
    search: SearchIndex,
    engine: InferenceEngine,
    k: int = 5,
    service: str | None = None,
    model: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    copy: bool = True,
) -> Iterator[AnswerEvent]:
    """:func:`answer_question` as events: the text deltas, then the checked answer (module docstring).

    Errors before the first event raise as in :func:`answer_question`; the prompt is not retried
    smaller when streaming (its first delta may already be sent), so a refused prompt raises.
    """
    start = time.perf_counter()
    prepared = _prepare(
        question, search=search, engine=engine, k=k, service=service, model=model, params=params, copy=copy
    )
    if prepared.built is None or prepared.nothing_to_copy:
        yield AnswerEvent(
            event="answer", data=_abstain(question, prepared, _not_generated(prepared), start).model_dump(mode="json")
        )
        return
    parts: list[str] = []
    stream = engine.stream(prepared.built.prompt, prepared.params)
    for delta in stream:
        parts.append(delta)
        yield AnswerEvent(event="delta", data={"text": delta})
    # Under a canary split the version that generated the text is the stream's, not info()'s (stable).
    generated_by = getattr(stream, "model", None)
    answer = _finish(
        question, prepared, "".join(parts), finish_reason=None, start=start,
        model_version=generated_by if isinstance(generated_by, str) else None,
    )  # fmt: skip
    yield AnswerEvent(event="answer", data=answer.model_dump(mode="json"))


def _not_generated(prepared: _Prepared) -> AbstainReason:
    """Why nothing was generated: nothing relevant, relevant passages the model's context cannot hold,
    or passages without a line to copy."""
    if not prepared.retrieval.covered:
        return "no_relevant_documents"
    return "no_answer_in_context" if prepared.built is not None else "context_too_small"


def _prepare(
    question: str,
    *,
    search: SearchIndex,
    engine: InferenceEngine,
    k: int,
    service: str | None,
    model: str | None,
    params: GenerationParams,
    copy: bool,
) -> _Prepared:
    # The engine first: no deployed model is a 503 for every question, covered or not, and the
    # context length sizes the prompt.
    info = engine.info()
    if model is not None and model != info.model:
        raise ModelMismatchError(model, info.model)
    if service is not None:
        known = search.services()
        if service not in known:
            raise UnknownServiceError(service, known)
    retrieval = retrieve(search, question, k=k, service=service)
    params = params.model_copy(update={"stop": list(dict.fromkeys([*STOP, *params.stop]))[:8]})
    built: BuiltPrompt | None = None
    budget = budget_for(info.context_length, params.max_tokens)
    if retrieval.covered:
        built = build_prompt(retrieval, question, budget_tokens=budget)
        if not built.passages:  # not even one passage fits: answering would be answering blind
            built = None
    sources: list[str] | None = None
    if built is not None and copy:
        sources = copy_sources(built, retrieval.question_terms)
        if not sources:
            # The page may be right and its best-scoring sections the wrong ones (the definition of a
            # feature is in a page's lead section, which scores below its details).
            sections = copyable_sections(retrieval)
            if sections != retrieval:
                rebuilt = build_prompt(sections, question, budget_tokens=budget)
                found = copy_sources(rebuilt, retrieval.question_terms) if rebuilt.passages else []
                if found:
                    retrieval, built, sources = sections, rebuilt, found
        params = params.model_copy(update={"copy_from": sources})
    return _Prepared(info=info, retrieval=retrieval, built=built, params=params, nothing_to_copy=sources == [])


def copyable_sections(retrieval: Retrieval) -> Retrieval:
    """``retrieval`` with each document's chunks replaced by those of its chunks, spare ones included,
    that hold a line to copy (:func:`copy_sources`'s rule), best first and as many as it had; a document
    with none keeps its chunks. Documents keep their order: only the sections shown of each page change.

    Measured on the S3 dev set (docs/benchmarks.md): falling through to the *next document* instead
    answered from wrong pages; the misses it was meant for were right pages with the wrong sections.
    """
    documents = []
    for doc in retrieval.documents:
        pool = [*doc.chunks, *doc.spare]
        able = [c for c in pool if _lines_to_copy(c.text.splitlines(), retrieval.question_terms)]
        chosen = able[: len(doc.chunks)]
        if not chosen:
            documents.append(doc)
            continue
        documents.append(doc.model_copy(update={"chunks": chosen, "spare": [c for c in pool if c not in chosen]}))
    return retrieval.model_copy(update={"documents": documents})


def copy_sources(built: BuiltPrompt, question_terms: Sequence[str] | None = None) -> list[str]:
    """What a copy-constrained answer may copy: the prose lines of the passages as the prompt shows
    them that name one of ``question_terms`` (all prose lines when None). A cut passage's pieces stay
    apart (a span across `` … `` would join sentences the page never joined); headings, link lists,
    table rows, code and lines of a few words are left out: copied, they answer nothing ("**Topics**",
    "## Example 5:", "1."); so are lines about something else ("For more information, see …").

    Examples
    --------
    >>> from docllm.answers.prompt import Passage
    >>> from docllm.answers.retrieve import RetrievedChunk
    >>> text = ("## Versioning\\n**Topics**\\n+ [Enable](v.md)\\n"
    ...         "Versioning keeps every version. … Enable it on the bucket.")
    >>> chunk = RetrievedChunk(chunk_id="c", doc_key="d", version_id=None, service="s", title="t",
    ...                        heading_path=[], text=text, score=1.0)
    >>> p = Passage(chunk=chunk, heading="t", text=text, cut=True)
    >>> built = BuiltPrompt(prompt="", passages=[p], estimated_tokens=1, budget_tokens=1)
    >>> copy_sources(built)
    ['Versioning keeps every version.', 'Enable it on the bucket.']
    >>> copy_sources(built, ["enabl"])
    ['Enable it on the bucket.']
    """
    lines = [line for p in built.passages for part in p.text.split(ELLIPSIS.strip()) for line in part.splitlines()]
    return [
        sentence
        for line in _lines_to_copy(lines, question_terms)
        for sentence in split_sentences(line)
        if len(sentence) <= MAX_COPY_CHARS  # the port's bound; a longer "sentence" is not an answer
    ][:MAX_COPY_SOURCES]


def _lines_to_copy(lines: Iterable[str], question_terms: Sequence[str] | None) -> list[str]:
    """The prose lines (stripped) naming enough of ``question_terms`` (every prose line when None)."""
    wanted = set(question_terms) if question_terms is not None else None
    need = max(1, math.ceil(MIN_LINE_TERMS_SHARE * len(wanted))) if wanted else 0
    stripped = (line.strip() for line in lines)
    return [
        line
        for line in stripped
        if _is_prose(line) and (wanted is None or len(wanted.intersection(analyze(line))) >= need)
    ]


MAX_COPY_SOURCES = 64
MAX_COPY_CHARS = 2000
MIN_LINE_TERMS_SHARE = 0.67
"""Share of the question's content terms a line must name to be copied (rounded up: 2 of 2, 3 of 3, 3 of
4, 4 of 5). On the S3 dev set with the answer-tuned tiny-s3 (docs/benchmarks.md): 0.5 cites an answering
page for 43% of the answerable questions and abstains on 80% of the uncovered ones; 0.67 for 39% and
93%. A wrong answer costs more than an abstention here, hence 0.67."""
MIN_PROSE_WORDS = 4
_NOT_PROSE = re.compile(r"^(#|\||```|[+*-] \[|\*\*[^*]+\*\*:?$|\d+\.$)")


def _is_prose(line: str) -> bool:
    return len(line.split()) >= MIN_PROSE_WORDS and not _NOT_PROSE.match(line)


def _generate(question: str, prepared: _Prepared, engine: InferenceEngine) -> tuple[BuiltPrompt, Generation]:
    """Generate; when the engine refuses the prompt (the token estimate was low), rebuild it once smaller."""
    built = prepared.built
    assert built is not None
    try:
        return built, engine.generate(built.prompt, prepared.params)
    except PromptTooLongError:
        # Relative to the refused prompt, not the context: the estimate was off for *this* text.
        smaller = build_prompt(
            prepared.retrieval, question, budget_tokens=int(built.estimated_tokens * RETRY_BUDGET_SHARE)
        )
        if not smaller.passages:
            raise
        params = prepared.params
        if params.copy_from:
            sources = copy_sources(smaller, prepared.retrieval.question_terms)
            if not sources:  # what could be copied did not fit: the caller sees the refusal
                raise
            params = params.model_copy(update={"copy_from": sources})
        return smaller, engine.generate(smaller.prompt, params)


def clean_answer(text: str, finish_reason: str | None) -> str:
    """The answer as returned: cut at a stop sequence, stripped, and without a sentence that the token
    limit cut off (kept when it is the only one).

    Examples
    --------
    >>> clean_answer(" Choose Enable. Then sav", "length")
    'Choose Enable.'
    >>> clean_answer("Choose Enable.\\n### Question: more", "stop")
    'Choose Enable.'
    """
    for stop in STOP:
        text = text.split(stop, 1)[0]
    text = text.strip()
    if finish_reason == "length":
        sentences = split_sentences(text)
        if len(sentences) > 1 and not sentences[-1].endswith((".", "!", "?")):
            text = text[: text.rfind(sentences[-1])].strip()
    return text


def _finish(
    question: str,
    prepared: _Prepared,
    raw: str,
    *,
    finish_reason: str | None,
    start: float,
    model_version: str | None,
    tokens: tuple[int, int] | None = None,
) -> Answer:
    built = prepared.built
    assert built is not None
    # A stream has no finish reason: a draft that does not end a sentence was most likely cut by the limit.
    text = clean_answer(raw, finish_reason or "length")
    version = model_version or prepared.info.model
    extra: dict[str, Any] = {"model_version": version}
    if tokens is not None:
        extra["prompt_tokens"], extra["completion_tokens"] = tokens
    if not text:
        return _abstain(question, prepared, "empty_answer", start, **extra)
    grounding = check_grounding(text, sources_of(built.passages))
    if not grounding.grounded:
        return _abstain(
            question, prepared, "unsupported_claims", start, grounded=False, unsupported=grounding.unsupported, **extra
        )
    citations, uncited = cite(text, [p.chunk for p in built.passages])
    if not citations:
        return _abstain(question, prepared, "no_citations", start, unsupported_sentences=uncited, **extra)
    return Answer(
        question=question,
        answer=text,
        citations=citations,
        grounded=True,
        unsupported=[],
        unsupported_sentences=uncited,
        abstained=False,
        reason=None,
        latency_ms=_ms(start),
        retrieval=_summary(prepared.retrieval),
        **extra,
    )


def _abstain(
    question: str,
    prepared: _Prepared,
    reason: AbstainReason,
    start: float,
    *,
    grounded: bool = True,
    unsupported: list[str] | None = None,
    unsupported_sentences: list[str] | None = None,
    **extra: Any,
) -> Answer:
    """The abstention: :data:`NOT_COVERED`, no citations. ``grounded`` stays true unless the draft failed
    the grounding check: the text returned claims nothing."""
    extra.setdefault("model_version", prepared.info.model)
    return Answer(
        question=question,
        answer=NOT_COVERED,
        citations=[],
        grounded=grounded,
        unsupported=unsupported or [],
        unsupported_sentences=unsupported_sentences or [],
        abstained=True,
        reason=reason,
        latency_ms=_ms(start),
        retrieval=_summary(prepared.retrieval),
        **extra,
    )


def _summary(retrieval: Retrieval) -> list[RetrievedDocument]:
    return [
        RetrievedDocument(
            doc_key=d.doc_key,
            version_id=d.version_id,
            title=d.title,
            score=d.score,
            coverage=d.coverage,
            chunk_ids=[c.chunk_id for c in d.chunks],
        )
        for d in retrieval.documents
    ]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)

"""The local inference engine: continuous batching of concurrent requests over our own GPT.

One scheduler thread owns the model. Callers (HTTP connection threads, the answers code, tests)
encode their prompt, put a request on a bounded queue — a full queue raises
:class:`~docllm.serving.exceptions.EngineBusyError` at once, it never blocks — and read text
deltas from the request's own event queue. The scheduler repeats:

1. drop running sequences that were cancelled or ran past their deadline (their rows are free);
2. admit queued requests while rows are free (up to ``max_batch``): each prompt is prefilled
   alone into its cache row, and its first token is chosen from the prefill's logits;
3. one batched forward decodes one token for every running sequence
   (:func:`docllm.serving.batch.decode_step`), each row at its own position;
4. each new token goes through the sequence's incremental decoder and stop matcher; finished
   sequences (EOS, a stop string, ``max_tokens``) leave the batch at once, and the last row
   moves into the freed one so the running rows stay packed.

So a request that arrives mid-generation joins at the next step instead of waiting for the
batch to finish, and a short request never waits for a long one.

A prompt whose tokens plus ``max_tokens`` exceed the context is refused
(:class:`~docllm.serving.exceptions.PromptTooLongError`), as OpenAI and vLLM refuse it: silently
dropping the start of a prompt would drop the retrieved context an answer depends on.

Greedy decoding gives the tokens of ``GPT.generate(temperature=0)`` for the same prompt, alone
or batched with others; ``dtype`` bfloat16 halves the weights read per token (decode on a CPU
is bound by memory bandwidth; vLLM's CPU build runs bf16) at the cost of matching the fp32
model only approximately.

Speed: on a CPU, decoding is bound by the bytes of weights and cache read per step, not by
Python: the engine preallocates the cache, runs under ``torch.inference_mode``, takes only the
last prefill position through the output head, stores tall fp32 matrices column-major (the
faster layout for MKL's few-row products), and shares one batched forward among all running
sequences. ``torch.compile`` is not offered: the step's shapes change every token (the span
attended), and a compiled step measured four times slower from recompilation.

Example
-------
>>> engine = LocalEngine.from_export(Path("out/hf"), model_name="tiny-s3-v3")  # doctest: +SKIP
>>> engine.generate("Amazon S3 is", GenerationParams(max_tokens=8)).text  # doctest: +SKIP
' an object storage service'
>>> for delta in engine.stream("Amazon S3 is", GenerationParams()):  # doctest: +SKIP
...     print(delta, end="")
>>> engine.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import torch

from docllm.exceptions import InvalidRequestError
from docllm.model.gpt import GPT
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.serving.batch import SlotCache, decode_step, pack_for_decode, prefill, relayout_for_decode
from docllm.serving.copying import NO_EOS, CopyConstraint, sentence_ends
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    GenerationTimeoutError,
    PromptTooLongError,
)
from docllm.serving.metrics import Registry
from docllm.serving.sampling import choose, needs_sampling
from docllm.serving.stops import StopMatcher
from docllm.serving.tokenizer import IncrementalDecoder, TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
IDLE_POLL_S = 0.05  # how often an idle scheduler looks at its stop flag


@dataclass(frozen=True)
class Finished:
    """How a request ended (the last event of its stream)."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


Event = str | Finished | BaseException


class EventSink(Protocol):
    """Where the scheduler puts a request's events: the caller's queue, or a pipe to another process."""

    def put(self, item: Event, /) -> None: ...


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: GenerationParams
    submitted: float
    deadline: float
    events: EventSink
    cancelled: bool = False  # set by the caller's thread, read by the scheduler's (a plain bool is atomic)

    def cancel(self) -> None:
        self.cancelled = True


class RequestHandle:
    """A submitted request: iterate it for text deltas; ``cancel()`` frees its row at the next step.

    ``events`` is the queue the request's events arrive on, ``cancel`` what cancelling does (set a
    flag the scheduler reads; for an engine in another process, send it there).
    """

    def __init__(
        self,
        events: queue.SimpleQueue[Event],
        *,
        prompt_tokens: int,
        alive: Callable[[], bool],
        model: str,
        cancel: Callable[[], None],
    ) -> None:
        self.events = events
        self._alive = alive
        self._cancel = cancel
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.finished: Finished | None = None
        self.text = ""

    def cancel(self) -> None:
        self._cancel()

    def __iter__(self) -> Iterator[str]:
        return self.deltas()

    def deltas(self, *, poll_s: float = 1.0, abandon: Callable[[], bool] | None = None) -> Iterator[str]:
        """Text deltas in order; raises the request's error (timeout, engine stopped) if it fails.

        While no event arrives, ``abandon`` is asked every ``poll_s`` seconds whether the consumer
        has gone (the server's check for a closed client connection); if so the request is
        cancelled and the iteration ends with ``finished`` still None.
        """
        held: Event | None = None
        while self.finished is None:
            if held is not None:
                event, held = held, None
            else:
                try:
                    event = self.events.get(timeout=poll_s)
                except queue.Empty:
                    if abandon is not None and abandon():
                        self.cancel()
                        return
                    if not self._alive():  # never hang on a scheduler that is gone
                        raise EngineUnavailableError("the engine stopped") from None
                    continue
            if isinstance(event, Finished):
                self.finished = event
            elif isinstance(event, BaseException):
                raise event
            else:
                # Deltas that queued up while the consumer was busy go out as one: a busy server
                # then writes one event per step it saw, not one per token (OpenAI's stream
                # allows a delta of several tokens; the text is the same).
                while True:
                    try:
                        nxt = self.events.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(nxt, str):
                        held = nxt
                        break
                    event += nxt
                self.text += event
                yield event

    def result(self) -> Generation:
        """Wait for the whole completion."""
        for _ in self:
            pass
        assert self.finished is not None
        return Generation(
            text=self.text,
            finish_reason=self.finished.finish_reason,
            prompt_tokens=self.finished.prompt_tokens,
            completion_tokens=self.finished.completion_tokens,
            model=self.model,
        )


def check_prompt(ids: list[int], params: GenerationParams, *, vocab_size: int, context_length: int) -> None:
    """Refuse what no engine of this model can serve: ids outside the vocabulary, or too long a request."""
    if not ids or not all(0 <= i < vocab_size for i in ids):
        raise InvalidRequestError(f"prompt token ids must be a non-empty list of ids in [0, {vocab_size})")
    if len(ids) + params.max_tokens > context_length:
        raise PromptTooLongError(
            f"the prompt has {len(ids)} tokens and max_tokens is {params.max_tokens}: together they exceed "
            f"the model's context of {context_length} tokens"
        )


class _Sequence:
    """A running request: its cache row holds ``pos`` tokens; ``last`` is the next step's input."""

    def __init__(self, req: _Request, tokenizer: TextTokenizer, vocab_size: int, piece: Callable[[int], str]) -> None:
        self.req = req
        self.params = req.params
        self.pos = len(req.prompt_ids)
        self.last = -1
        self.generated = 0
        self.decoder = IncrementalDecoder(tokenizer, req.prompt_ids)
        self.stops = StopMatcher(req.params.stop)
        self.sampled = needs_sampling(req.params)
        self.generator: torch.Generator | None = None
        if req.params.temperature > 0:
            # Each request draws from its own generator: a seed reproduces it whatever runs beside it.
            seed = req.params.seed if req.params.seed is not None else random.getrandbits(63)
            self.generator = torch.Generator().manual_seed(seed)
        self.copy: CopyConstraint | None = None
        if req.params.copy_from:
            sources = [tokenizer.encode(text) for text in req.params.copy_from]
            self.copy = CopyConstraint(
                sources,
                sentence_ends=[sentence_ends(ids, piece) for ids in sources],
                eos_id=tokenizer.eos_id if tokenizer.eos_id is not None else NO_EOS,
            )
        self.seen: torch.Tensor | None = None
        if req.params.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab_size, dtype=torch.bool)
            self.seen[torch.tensor(req.prompt_ids)] = True


class EngineMetrics:
    """The engine's series for ``/metrics`` (the server adds its HTTP series to the same registry)."""

    def __init__(self, registry: Registry, queue_depth: Callable[[], float], batch: Callable[[], float]) -> None:
        self.requests = registry.counter(
            "docllm_engine_requests_total",
            "Requests by outcome (stop, length, cancelled, timeout, rejected, error).",
            ("outcome",),
        )
        self.prompt_tokens = registry.counter("docllm_engine_prompt_tokens_total", "Prompt tokens prefilled.")
        self.completion_tokens = registry.counter("docllm_engine_completion_tokens_total", "Tokens generated.")
        self.steps = registry.counter("docllm_engine_decode_steps_total", "Batched decode steps.")
        registry.gauge("docllm_engine_queue_depth", "Requests waiting for a batch row.", queue_depth)
        registry.gauge("docllm_engine_batch_size", "Sequences in the running batch.", batch)
        self.step_batch = registry.histogram(
            "docllm_engine_step_batch_size", "Sequences per decode step.", buckets=(1, 2, 4, 8, 16, 32, 64)
        )
        self.queue_wait = registry.histogram("docllm_engine_queue_wait_seconds", "Submit to prefill.")
        self.first_token = registry.histogram("docllm_engine_time_to_first_token_seconds", "Submit to first token.")
        self.latency = registry.histogram("docllm_engine_request_duration_seconds", "Submit to last token.")


class LocalEngine(InferenceEngine):
    """Continuous-batching engine over a :class:`GPT` (see the module docstring).

    Parameters
    ----------
    model
        The model, which the engine now owns: cast to ``dtype`` and its weights re-laid for decoding
        (:func:`~docllm.serving.batch.relayout_for_decode`). Put it on a GPU first to serve there.
    tokenizer
        Its tokenizer (:func:`docllm.serving.tokenizer.load_tokenizer`).
    model_name
        The model version reported in every answer.
    max_batch
        Sequences decoded together; each holds a preallocated cache row of the full context.
    max_queue
        Requests allowed to wait for a row; one more raises ``EngineBusyError``.
    request_timeout_s
        Default deadline of a request, queue wait included.
    threads
        ``torch.set_num_threads`` (process-wide); None leaves torch's default.
    dtype
        ``"float32"`` (exact against the trained model) or ``"bfloat16"``.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        max_batch: int = 8,
        max_queue: int = 64,
        request_timeout_s: float = 120.0,
        threads: int | None = None,
        dtype: str = "float32",
        registry: Registry | None = None,
        after_iteration: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = pack_for_decode(relayout_for_decode(model.to(DTYPES[dtype]).eval()), max_batch)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_batch = max_batch
        self.request_timeout_s = request_timeout_s
        self.context_length = model.config.block_size
        self.registry = registry or Registry()
        self._device = model.lm_head.weight.device
        self._cache = SlotCache(model, max_batch)
        self.max_queue = max_queue
        self._queue: queue.Queue[_Request] = queue.Queue()  # bounded by submit(): see there
        self._submit_lock = threading.Lock()
        self._running: list[_Sequence] = []
        self._pieces: dict[int, str] = {}
        self._accepting = True
        self._stop = False
        self._error: BaseException | None = None
        # Called on the scheduler thread after each admission pass and each step, and once at the end:
        # where events put to a pipe sink go out as one message per step.
        self._after_iteration = after_iteration or (lambda: None)
        self.metrics = EngineMetrics(self.registry, self._queue.qsize, lambda: len(self._running))
        self._thread = threading.Thread(target=self._loop, name="docllm-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_export(cls, export_dir: Path, *, model_name: str, device: str = "cpu", **kwargs: Any) -> LocalEngine:
        """Load a docllm Hugging Face export (weights and tokenizer) and start serving it."""
        from docllm.model.export import load_hf_export

        model = load_hf_export(export_dir, device=device)
        return cls(model, load_tokenizer(export_dir), model_name=model_name, **kwargs)

    # --- the InferenceEngine port -------------------------------------------------------

    def info(self) -> ModelInfo:
        return ModelInfo(model=self.model_name, context_length=self.context_length)

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        return self.submit(prompt, params).result()

    def stream(self, prompt: str, params: GenerationParams) -> Generator[str, None, None]:
        """Text deltas; a refusal (busy, too long) raises here, before the first delta is asked for."""
        return self._stream(self.submit(prompt, params))

    @staticmethod
    def _stream(handle: RequestHandle) -> Generator[str, None, None]:
        try:
            yield from handle
        finally:
            if handle.finished is None:  # the consumer stopped reading (closed, or dropped): free the row
                handle.cancel()

    # --- requests -----------------------------------------------------------------------

    def submit(
        self,
        prompt: str | list[int],
        params: GenerationParams,
        *,
        timeout_s: float | None = None,
        events: EventSink | None = None,
    ) -> RequestHandle:
        """Queue a request (text, or ids already encoded); raises at once when it cannot be served.

        ``events``: where the scheduler sends the request's events instead of the handle's queue
        (:mod:`docllm.serving.engine_process` forwards them to another process); the handle then
        receives none.
        """
        if not self._accepting or self._error is not None:
            raise EngineUnavailableError("the engine is shutting down" if self._error is None else "the engine failed")
        ids = self.tokenizer.encode_prompt(prompt) if isinstance(prompt, str) else list(prompt)
        check_prompt(ids, params, vocab_size=self.model.config.vocab_size, context_length=self.context_length)
        now = time.monotonic()
        own: queue.SimpleQueue[Event] = queue.SimpleQueue()
        deadline = now + (timeout_s if timeout_s is not None else self.request_timeout_s)
        req = _Request(ids, params, now, deadline, events if events is not None else own)
        with self._submit_lock:
            # Room: a free row each, plus max_queue waiting. Requests the scheduler has not picked up
            # yet still count as waiting, so a burst onto an idle engine fills rows, not the queue.
            if self._queue.qsize() >= self.max_queue + self.max_batch - len(self._running):
                self.metrics.requests.inc(outcome="rejected")
                raise EngineBusyError(f"the engine's queue is full ({self.max_queue} waiting)")
            self._queue.put_nowait(req)
        return RequestHandle(own, prompt_tokens=len(ids), alive=self.alive, model=self.model_name, cancel=req.cancel)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> int:
        return len(self._running)

    def alive(self) -> bool:
        """Whether the scheduler still runs (it stops on close or on a failure of its own)."""
        return self._thread.is_alive()

    def close(self, *, drain_timeout_s: float = 0.0) -> None:
        """Stop accepting; finish queued and running requests for up to ``drain_timeout_s``; stop.

        Whatever is still unfinished then fails with ``EngineUnavailableError``.
        """
        self._accepting = False
        deadline = time.monotonic() + drain_timeout_s
        while (self._running or self._queue.qsize()) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        self._stop = True
        self._thread.join(timeout=10)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # --- the scheduler thread ---------------------------------------------------------------

    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while not self._stop:
                    self._retire_abandoned()
                    self._admit()
                    self._after_iteration()
                    if self._running:
                        self._step()
                        self._after_iteration()
        except BaseException as e:  # a bug or an out-of-memory: fail every request rather than hang them
            log.exception("engine scheduler failed")
            self._error = e
        self._fail_all(EngineUnavailableError("the engine stopped"))
        self._after_iteration()

    def _retire_abandoned(self) -> None:
        now = time.monotonic()
        for seq in list(self._running):
            if seq.req.cancelled:
                self._remove(seq, "cancelled")
            elif now > seq.req.deadline:
                seq.req.events.put(GenerationTimeoutError(self._timeout_message(seq.req)))
                self._remove(seq, "timeout")

    def _admit(self) -> None:
        while len(self._running) < self.max_batch:
            try:
                # Idle: wait for work (briefly, to notice close()); busy: only take what is there.
                req = self._queue.get(timeout=IDLE_POLL_S) if not self._running else self._queue.get_nowait()
            except queue.Empty:
                return
            now = time.monotonic()
            if req.cancelled:
                self.metrics.requests.inc(outcome="cancelled")
                continue
            if now > req.deadline:
                req.events.put(GenerationTimeoutError(self._timeout_message(req)))
                self.metrics.requests.inc(outcome="timeout")
                continue
            self.metrics.queue_wait.observe(now - req.submitted)
            self.metrics.prompt_tokens.inc(len(req.prompt_ids))
            seq = _Sequence(req, self.tokenizer, self.model.config.vocab_size, self._piece)
            row = len(self._running)
            self._running.append(seq)
            try:
                ids = torch.tensor(req.prompt_ids, dtype=torch.long, device=self._device)
                logits = prefill(self.model, self._cache, row, ids)
                token = self._choose(logits, seq)
            except Exception as e:  # this request fails; the batch runs on (its row is simply not taken)
                log.exception("prefill failed")
                self._running.pop()
                req.events.put(EngineUnavailableError(f"the engine could not run this prompt: {type(e).__name__}"))
                self.metrics.requests.inc(outcome="error")
                continue
            self.metrics.first_token.observe(time.monotonic() - req.submitted)
            self._advance(seq, token)

    def _step(self) -> None:
        running = self._running
        tokens = torch.tensor([s.last for s in running], dtype=torch.long, device=self._device)
        positions = [s.pos for s in running]
        pos = torch.tensor(positions, dtype=torch.long, device=self._device)
        # fp32 logits whatever the weights: argmax and sampling over bf16 are several times slower on
        # the CPU (8 x 32k: 0.92 ms for the bf16 argmax, 0.24 ms converted first).
        logits = decode_step(self.model, self._cache, tokens, pos, max(positions) + 1).float()  # (n, V)
        self.metrics.steps.inc()
        self.metrics.step_batch.observe(len(running))
        for seq in running:
            seq.pos += 1  # before any row moves: a moved row must carry the position just written
        greedy = logits.argmax(dim=-1).tolist()  # one call for every greedy row
        for i, seq in enumerate(list(running)):
            token = self._choose(logits[i], seq) if seq.sampled or seq.copy else greedy[i]
            self._advance(seq, token)

    def _choose(self, logits: torch.Tensor, seq: _Sequence) -> int:
        # Sampling runs on the CPU, where each request's generator lives.
        logits = logits.cpu()
        if seq.copy is not None:
            allowed = torch.tensor(sorted(t for t in seq.copy.allowed() if 0 <= t < logits.size(-1)), dtype=torch.long)
            if len(allowed):  # a source of ids this model lacks cannot constrain it: choose freely
                logits = torch.full_like(logits, float("-inf")).index_copy(0, allowed, logits[allowed])
        return choose(logits, seq.params, generator=seq.generator, seen=seq.seen)

    def _piece(self, token: int) -> str:
        """One token's text, cached: copy constraints ask for every token of their sources."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.tokenizer.decode([token])
        return text

    def _advance(self, seq: _Sequence, token: int) -> None:
        """Take ``token`` into ``seq``: send the text it completes; retire the sequence if it is done."""
        seq.generated += 1
        seq.last = token
        if seq.copy is not None:
            seq.copy.advance(token)
        if seq.seen is not None:
            seq.seen[token] = True
        events = seq.req.events
        if token == self.tokenizer.eos_id:
            self._finish(seq, "stop", seq.decoder.flush())
            return
        out, stopped = seq.stops.feed(seq.decoder.push(token))
        if out:
            events.put(out)
        if stopped:
            self._finish(seq, "stop", "")
        elif seq.generated >= seq.params.max_tokens:
            self._finish(seq, "length", seq.decoder.flush())

    def _finish(self, seq: _Sequence, reason: FinishReason, tail: str) -> None:
        out, stopped = seq.stops.feed(tail)
        out += "" if stopped else seq.stops.flush()
        if out:
            seq.req.events.put(out)
        if stopped:
            reason = "stop"
        seq.req.events.put(Finished(reason, len(seq.req.prompt_ids), seq.generated))
        self.metrics.completion_tokens.inc(seq.generated)
        self.metrics.latency.observe(time.monotonic() - seq.req.submitted)
        self._remove(seq, reason)

    def _remove(self, seq: _Sequence, outcome: str) -> None:
        """Free ``seq``'s row; the last running row moves into it so rows 0..n-1 stay packed."""
        running = self._running
        i = running.index(seq)
        last = running.pop()
        if last is not seq:
            self._cache.move(len(running), i, last.pos)
            running[i] = last
        self.metrics.requests.inc(outcome=outcome)

    def _fail_all(self, error: Exception) -> None:
        for seq in self._running:
            seq.req.events.put(error)
        self._running.clear()
        while True:
            try:
                self._queue.get_nowait().events.put(error)
            except queue.Empty:
                return

    def _timeout_message(self, req: _Request) -> str:
        return f"the request did not finish within its timeout of {req.deadline - req.submitted:.0f} s"

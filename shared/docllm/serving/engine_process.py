"""The local engine in a process of its own, behind the same submit-and-read surface.

Why: the engine's scheduler and the server's connection threads share one interpreter lock in one
process. With 8 streaming clients on 2 cores, the connection threads (parse, JSON, socket writes)
take the lock from the scheduler between its steps, and the tiny model's aggregate tokens/s over
HTTP fell well short of the same engine in-process (docs/benchmarks.md). vLLM runs its engine core
and its API server as two processes for the same reason. Here the child process owns the model and
its scheduler; the server process keeps HTTP, tokenization, validation and back-pressure.

Wire (two one-way :func:`multiprocessing.Pipe` connections, pickled tuples):

* parent → child: ``("submit", rid, ids, params, timeout_s)``, ``("cancel", rid)``,
  ``("metrics", n)``, ``("rejected",)``, ``("close", drain_timeout_s)``;
* child → parent: ``("ready", context_length, vocab_size)`` or ``("failed", message)`` once, then
  ``("events", [(rid, event), ...])`` — every event one scheduler pass produced, in one message —
  and ``("metrics", n, text)`` answers.

The parent refuses what the child would refuse (bad ids, too long, a full queue) before anything is
sent, so a refusal is still immediate; a child that dies fails every request in flight with
:class:`~docllm.serving.exceptions.EngineUnavailableError`, and a parent that dies closes the
command pipe, on which the child stops.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.util
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from docllm.ports.inference import GenerationParams
from docllm.serving.engine import Event, Finished, LocalEngine, RequestHandle, check_prompt
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError
from docllm.serving.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

METRICS_TIMEOUT_S = 5.0
CHILD_QUEUE_UNBOUNDED = 1 << 30
COMMAND_POLL_S = 0.5  # how soon the child notices that its scheduler has stopped


class EngineProcess:
    """A :class:`LocalEngine` loaded from an export in a child process (see the module docstring).

    ``engine_kwargs`` go to :meth:`LocalEngine.from_export` in the child (``max_batch``,
    ``max_queue``, ``request_timeout_s``, ``threads``, ``dtype``, ``device``).
    """

    def __init__(
        self, export_dir: Path, *, model_name: str, start_timeout_s: float = 600.0, **engine_kwargs: Any
    ) -> None:
        self.model_name = model_name
        self.max_batch = int(engine_kwargs.get("max_batch", 8))
        self.max_queue = int(engine_kwargs.get("max_queue", 64))
        self.request_timeout_s = float(engine_kwargs.get("request_timeout_s", 120.0))
        # spawn, not fork: the server process already runs threads (its HTTP listener answers 503
        # while the model loads), and a forked child would inherit their locks in any state.
        # The parent counts the room (see submit) and frees a cancelled request's at once; the child
        # keeps a cancelled request queued until a row frees (its scheduler drops it then), so its own
        # queue must never refuse what the parent let through: it gets no bound of its own.
        child_kwargs = {**engine_kwargs, "max_queue": CHILD_QUEUE_UNBOUNDED}
        ctx = multiprocessing.get_context("spawn")
        child_commands, self._commands = ctx.Pipe(duplex=False)
        self._events, child_events = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main,
            args=(child_commands, child_events, export_dir, model_name, child_kwargs),
            name=f"docllm-engine-{model_name}",
            daemon=True,
        )
        self._process.start()
        child_commands.close()
        child_events.close()
        self.tokenizer: TextTokenizer = load_tokenizer(export_dir)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, queue.SimpleQueue[Event]] = {}
        self._ids = itertools.count()
        self._metrics_replies: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._metrics_numbers = itertools.count()
        self._metrics_lock = threading.Lock()
        self._accepting = True
        self._dead = False
        try:
            ready = self._events.poll(start_timeout_s) and self._events.recv()
        except (EOFError, OSError):
            ready = ("failed", f"it exited with code {self._process.exitcode}")
        if not ready or ready[0] != "ready":
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)  # reaped: no zombie left behind
            self._commands.close()
            self._events.close()
            reason = ready[1] if ready else f"no answer within {start_timeout_s:.0f} s"
            raise RuntimeError(f"the engine process did not start: {reason}")
        self.context_length: int = ready[1]
        self.vocab_size: int = ready[2]
        self.registry = _RemoteRegistry(self)
        # At interpreter exit multiprocessing sends SIGTERM to daemonic children (this one ignores
        # it) and then joins them without a timeout; closing the command pipe first (a finalizer of
        # positive priority runs before that join) makes the child stop even without close().
        multiprocessing.util.Finalize(self, self._commands.close, exitpriority=100)
        self._reader = threading.Thread(target=self._read, name="docllm-engine-events", daemon=True)
        self._reader.start()

    # --- what the server calls ---------------------------------------------------------------

    def submit(
        self, prompt: str | list[int], params: GenerationParams, *, timeout_s: float | None = None
    ) -> RequestHandle:
        """As :meth:`LocalEngine.submit`: refusals raise here, at once; events arrive from the child."""
        if not self._accepting or self._dead:
            raise EngineUnavailableError("the engine is shutting down" if not self._dead else "the engine stopped")
        ids = self.tokenizer.encode_prompt(prompt) if isinstance(prompt, str) else list(prompt)
        check_prompt(ids, params, vocab_size=self.vocab_size, context_length=self.context_length)
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        with self._lock:
            # Every request not yet finished is queued or running in the child: the same room as
            # LocalEngine.submit gives (a row each, plus max_queue waiting).
            full = len(self._pending) >= self.max_queue + self.max_batch
            if not full:
                rid = next(self._ids)
                self._pending[rid] = events
        if full:
            with contextlib.suppress(OSError, ValueError):  # only a metric: a gone child changes nothing
                self._send(("rejected",))
            raise EngineBusyError(f"the engine's queue is full ({self.max_queue} waiting)")
        try:
            self._send(("submit", rid, ids, params, timeout_s))
        except (OSError, ValueError) as e:
            self._pending.pop(rid, None)
            raise EngineUnavailableError("the engine stopped") from e
        return RequestHandle(
            events, prompt_tokens=len(ids), alive=self.alive, model=self.model_name, cancel=lambda: self._cancel(rid)
        )

    def alive(self) -> bool:
        return not self._dead and self._process.is_alive()

    def close(self, *, drain_timeout_s: float = 0.0) -> None:
        """Stop accepting; the child finishes what it holds for up to ``drain_timeout_s``, then exits."""
        self._accepting = False
        with contextlib.suppress(OSError, ValueError):  # already gone
            self._send(("close", drain_timeout_s))
        self._process.join(timeout=drain_timeout_s + 15)
        if self._process.is_alive():
            log.warning("engine process %s did not stop: killing it", self._process.pid)
            self._process.kill()
            self._process.join(timeout=5)
        self._reader.join(timeout=5)
        self._commands.close()

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def render_metrics(self) -> str:
        """The child's ``/metrics`` series (empty if it does not answer in time)."""
        with self._metrics_lock:
            # Numbered: a reply that comes after its caller gave up must not answer the next caller.
            number = next(self._metrics_numbers)
            deadline = time.monotonic() + METRICS_TIMEOUT_S
            try:
                self._send(("metrics", number))
                while True:
                    answered, text = self._metrics_replies.get(timeout=max(deadline - time.monotonic(), 0.0))
                    if answered == number:
                        return text
            except (OSError, ValueError, queue.Empty):
                return ""

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._commands.send(message)

    def _cancel(self, rid: int) -> None:
        # A cancelled request sends nothing back (its consumer is gone), so its room is freed here;
        # the child may hold its row one more step, which its larger queue bound absorbs.
        with self._lock:
            events = self._pending.pop(rid, None)
        if events is not None:
            with contextlib.suppress(OSError, ValueError):  # the child is gone: nothing runs to cancel
                self._send(("cancel", rid))

    def _read(self) -> None:
        """Route the child's events to their requests' queues until the child's pipe closes."""
        try:
            self._route()
        except (EOFError, OSError):
            pass
        except BaseException:  # a message that does not unpickle, say: nothing after it is trusted
            log.exception("engine process: cannot read its events")
        finally:
            self._dead = True
            with self._lock:
                pending, self._pending = self._pending, {}
            for events in pending.values():
                events.put(EngineUnavailableError("the engine stopped"))

    def _route(self) -> None:
        while True:
            message = self._events.recv()
            if message[0] == "events":
                for rid, event in message[1]:
                    events = self._pending.get(rid)
                    if events is None:
                        continue
                    if isinstance(event, Finished | BaseException):
                        self._pending.pop(rid, None)
                    events.put(event)
            elif message[0] == "metrics":
                self._metrics_replies.put((message[1], message[2]))


class _RemoteRegistry:
    """``registry.render()`` as the server calls it on an in-process engine."""

    def __init__(self, engine: EngineProcess) -> None:
        self._engine = engine

    def render(self) -> str:
        return self._engine.render_metrics()


class _PipeSink:
    """The child's side: a request's events collected for the next message to the parent."""

    def __init__(
        self, rid: int, outbox: list[tuple[int, Event]], outbox_lock: threading.Lock, handles: dict[int, Any]
    ) -> None:
        self._rid = rid
        self._outbox = outbox
        self._outbox_lock = outbox_lock
        self._handles = handles
        self.finished = False

    def put(self, item: Event, /) -> None:
        with self._outbox_lock:
            self._outbox.append((self._rid, item))
        if isinstance(item, Finished | BaseException):
            self.finished = True
            self._handles.pop(self._rid, None)


def _child_main(
    commands: Connection, events: Connection, export_dir: Path, model_name: str, engine_kwargs: dict[str, Any]
) -> None:
    """The engine process: load, announce, then serve commands until ``close`` or the parent is gone."""
    # The parent decides when this process stops (close, or its pipe closing when it dies): a SIGTERM
    # or Ctrl-C sent to the whole process group must not cut off the requests the parent is draining.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()  # held from taking a batch to sending it: batches leave in order
    outbox_lock = threading.Lock()  # held only to append or take: the scheduler never waits on a send
    outbox: list[tuple[int, Event]] = []
    handles: dict[int, RequestHandle] = {}

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            events.send(message)

    def flush() -> None:
        # Scheduler thread (after each pass) and command thread (a refused submit) both flush.
        with send_lock:
            with outbox_lock:
                batch = outbox[:]
                outbox.clear()
            if batch:
                events.send(("events", batch))

    try:
        engine = LocalEngine.from_export(export_dir, model_name=model_name, after_iteration=flush, **engine_kwargs)
    except Exception as e:
        log.exception("cannot load the export %s", export_dir)
        send(("failed", f"{type(e).__name__}: {e}"))
        return
    send(("ready", engine.context_length, engine.model.config.vocab_size))
    drain_timeout_s = 0.0
    try:
        while engine.alive():  # a scheduler that failed has failed its requests: stop, to be restarted
            try:
                if not commands.poll(COMMAND_POLL_S):
                    continue
                message = commands.recv()
            except (EOFError, OSError):
                break  # the parent is gone: nobody reads the answers
            kind = message[0]
            if kind == "submit":
                _, rid, ids, params, timeout_s = message
                sink = _PipeSink(rid, outbox, outbox_lock, handles)
                try:
                    handles[rid] = engine.submit(ids, params, timeout_s=timeout_s, events=sink)
                except Exception as e:  # the parent checked already; this is a race with a failure
                    sink.put(e)
                    flush()
                if sink.finished:  # it finished before its handle was stored: nothing left to cancel
                    handles.pop(rid, None)
            elif kind == "cancel":
                handle = handles.pop(message[1], None)  # nothing more will be sent for it
                if handle is not None:
                    handle.cancel()
            elif kind == "metrics":
                send(("metrics", message[1], engine.registry.render()))
            elif kind == "rejected":
                engine.metrics.requests.inc(outcome="rejected")
            elif kind == "close":
                drain_timeout_s = float(message[1])
                break
    finally:
        start = time.monotonic()
        engine.close(drain_timeout_s=drain_timeout_s)
        log.info("engine process stopped after draining %.1f s", time.monotonic() - start)

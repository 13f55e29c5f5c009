"""``docllm up``: the whole platform on one machine, wired by ``template.yaml``.

Local bucket notifications go to the local default bus; the template's rules
route events into local queues; one worker thread per (function, queue) pair
receives batches shaped exactly like Lambda's SQS events and calls the same
``services/*/app.py`` handler the Lambda runs, honouring partial batch
failures, visibility timeouts, retries with backoff and the DLQ. An HTTP
server on 127.0.0.1 plays API Gateway for the API function.

Two more threads play the AWS services that act on their own: ``alarm-evaluator`` plays
CloudWatch (the template's alarms evaluated on the local metrics every ``DOCLLM_ALARM_TICK_S``
seconds, 1 by default, where CloudWatch evaluates a high-resolution alarm every 10 s: only the
delay differs, a datapoint counts once its period has closed; each state change goes on the local
default bus as "CloudWatch Alarm State Change", see :mod:`docllm.monitoring.evaluator`), and one
``schedule-<name>`` thread per EventBridge Scheduler schedule of the template plays Scheduler
(``rate(…)``, ``cron(…)``, ``at(…)``; the target function is invoked with the schedule's ``Input``
as its event; ``DOCLLM_SCHEDULE_SCALE`` shrinks rate periods, for tests).

One runtime per data directory: it holds an exclusive ``flock`` on ``<data dir>/runtime.lock``
for its whole life (the OS releases it when the process dies, however it dies), and "is it
running" asks that lock, not whether some pid is alive. Everything under the data directory is
private to the user (directories 0700, files 0600, umask 077 for the runtime and its jobs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from docllm.adapters.local.files import DIR_MODE, UMASK, open_private, private_dir, secure_tree, write_private
from docllm.bootstrap import Platform, build_platform, find_template, reset_platforms
from docllm.exceptions import ConfigurationError, PlatformNotRunningError
from docllm.faults import FaultInjector, unwrap
from docllm.ports.queue import Message
from docllm.runtime.schedules import Schedule
from docllm.runtime.template import FunctionSpec, ScheduleSpec, SqsSource, read_wiring
from docllm.settings import Settings

Handler = Callable[[dict[str, Any], Any], Any]
RUNTIME_FILE = "runtime.json"
LOCK_FILE = "runtime.lock"
API_KEY_FILE = "api-key"
#: How long a start retries the lock: a reader (``read_runtime_file``) holds it for microseconds.
LOCK_RETRY_S = 1.0
#: Seconds between two evaluations of the alarms (``DOCLLM_ALARM_TICK_S``).
ALARM_TICK_S = 1.0


@dataclass
class LocalContext:
    """The parts of Lambda's context object that Powertools reads."""

    function_name: str
    timeout_s: int
    aws_request_id: str = ""
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(template_dir: Path, fn: FunctionSpec) -> Handler:
    module_name, _, attr = fn.handler.rpartition(".")
    path = template_dir / fn.code_uri / f"{module_name.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(f"docllm_services_{fn.name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler {fn.handler} of {fn.name} from {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = getattr(module, attr)
    return handler


def sqs_event(queue: str, messages: list[Message]) -> dict[str, Any]:
    """A Lambda SQS event for ``messages``, field for field as the event source mapping sends it."""
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": str(m.sent_at_ms),
                    "SenderId": "AROALOCAL:events",
                    "ApproximateFirstReceiveTimestamp": str(m.first_received_at_ms or m.sent_at_ms),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m.body.encode("utf-8")).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:local:000000000000:{queue}",
                "awsRegion": "local",
            }
            for m in messages
        ]
    }


def local_environment(platform_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    env = dict(platform_env)
    env.update(
        {
            "DOCLLM_BACKEND": "local",
            "DOCLLM_DATA_DIR": str(data_dir),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": env.get("POWERTOOLS_METRICS_NAMESPACE", "docllm"),
            "AWS_LAMBDA_FUNCTION_NAME": "docllm-local",
        }
    )
    env.pop("DOCLLM_SEARCH_ENDPOINT", None)
    # A new champion serves from the local engine; DOCLLM_DEPLOY_TARGET=none in the environment of
    # `docllm up` turns that off (deploy only when asked). The template's AWS targets never apply here.
    env["DOCLLM_DEPLOY_TARGET"] = "none" if os.environ.get("DOCLLM_DEPLOY_TARGET") == "none" else "local"
    return env


class LocalRuntime:
    def __init__(
        self,
        data_dir: Path,
        *,
        template: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 8787,
        auth: bool = True,
        poll_interval_s: float = 0.05,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.template = (template or find_template()).resolve()
        self.wiring = read_wiring(self.template)
        self.host, self.port, self.auth = host, port, auth
        self.poll_interval_s = poll_interval_s
        self._log = log or (lambda _msg: None)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.platform: Platform | None = None
        self.http: Any = None
        self.handlers: dict[str, Handler] = {}
        self._lock_fd: int | None = None
        self._umask: int | None = None
        self.alarm_evaluator: Any = None  # docllm.monitoring.evaluator.LocalAlarmEvaluator, once started

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        # A second runtime would make the first one's in-flight messages visible again on start:
        # the lock comes before anything else, and is held until stop() (or the process's death).
        self._acquire_lock()
        try:
            self._start()
        except BaseException:
            self._stop.set()  # whatever start() has set going ends; nothing was announced yet
            if self.http is not None:
                with contextlib.suppress(Exception):
                    self.http.shutdown()
            self._release()
            raise

    def _start(self) -> None:
        self._umask = os.umask(UMASK)  # what this process creates from now on is private
        tightened = secure_tree(self.data_dir)  # a data directory an older docllm left readable
        if tightened:
            self._log(f"made {tightened} path(s) under {self.data_dir} private to this user")
        (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)  # the lock is ours: any such file is stale
        p = self.prepare()
        for fn in self.wiring.functions.values():
            for src in fn.sqs_sources:
                t = threading.Thread(target=self._worker, args=(fn, src), name=f"{fn.name}<-{src.queue}", daemon=True)
                self._threads.append(t)
        api = next((f for f in self.wiring.functions.values() if f.http_routes), None)
        if api is not None:
            from docllm.runtime.http import start_api_server

            self.http = start_api_server(self, api, self.handlers[api.name])
            self.port = self.http.server_address[1]
        # Load the BM25 scorer in the background: the first search would otherwise pay for it.
        warm_up = getattr(p.search, "warm_up", None)
        if warm_up is not None:
            threading.Thread(target=warm_up, name="search-warm-up", daemon=True).start()
        self._threads.append(threading.Thread(target=self._outbox_relay, name="outbox-relay", daemon=True))
        self._threads.extend(self._monitoring_threads(p))
        for t in self._threads:
            t.start()
        # The deployed model serves again, as a SageMaker endpoint outlives a redeploy of the functions.
        threading.Thread(target=self._restore_engine, args=(p,), name="engine-restore", daemon=True).start()
        self._write_runtime_file()

    def _restore_engine(self, p: Platform) -> None:
        from docllm.service_layer.deploy import supervise

        supervise(p)  # a canary that was baking when the platform stopped is concluded when its bake ends
        try:
            restored = p.engines.restore()
        except Exception as e:  # the platform runs without its model; `docllm deploy` starts one again
            self._log(f"the deployed model could not be started again: {type(e).__name__}: {e}")
            return
        if restored:
            self._log(f"serving {restored['model_version']} at {restored['url']}")

    def prepare(self, faults: FaultInjector | None = None) -> Platform:
        """Everything of :meth:`start` but the threads and the API: the functions' environment, the
        platform (with ``faults``, a test's injector, when given), crash recovery, the handlers.
        Tests that drive the handlers themselves (kill points, one message at a time) call this."""
        env: dict[str, str] = {}
        for fn in self.wiring.functions.values():
            env.update(fn.environment)
        os.environ.update(local_environment(env, self.data_dir))
        os.environ["DOCLLM_TEMPLATE"] = str(self.template)
        reset_platforms()
        self.platform = p = build_platform(Settings.from_env())
        if faults is not None:
            p.faults = faults  # before any port is built: every port comes wrapped
        _ = p.objects  # creates the template's buckets
        self._recover(p)
        for fn in self.wiring.functions.values():
            self.handlers[fn.name] = load_handler(self.template.parent, fn)
        return p

    def _recover(self, p: Platform) -> None:
        """After a crash: nothing accepted is lost, nothing half-done stays half-done."""
        from docllm.adapters.local.idempotency import release_in_progress

        release_in_progress(self.data_dir / "idempotency.db")
        recovered = p.local_queue.recover()
        if recovered:
            self._log(f"redelivering {recovered} message(s) that were in flight when the runtime stopped")
        failed = p.jobs.recover()  # type: ignore[attr-defined]
        for name in failed:
            self._log(f"job {name} was running when the runtime stopped: marked Failed")
        # Registry status changes a crash kept from being announced go out too (SageMaker never loses one).
        announced = unwrap(p.registry).announce_pending()  # type: ignore[attr-defined]
        if announced:
            self._log(f"announced {announced} registry status change(s) a crash had held back")
        # Events a crash left in the outbox go out before any new work; the relay thread keeps at it.
        self._relay_outbox(min_age_s=0.0)

    def stop(self, timeout_s: float = 30) -> None:
        """Stop taking work, let batches in progress finish, then return."""
        self._stop.set()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.platform is not None and "engines" in vars(self.platform):  # only if one was ever started
            self.platform.engines.stop_all(max(1.0, deadline - time.monotonic()))
        self._release()

    # -- the data directory's lock ------------------------------------------------
    def _acquire_lock(self) -> None:
        private_dir(self.data_dir)
        os.chmod(self.data_dir, DIR_MODE)
        if not (self.data_dir / LOCK_FILE).exists():  # a runtime of an older docllm takes no lock
            with contextlib.suppress(PlatformNotRunningError, OSError, ValueError, KeyError, TypeError):
                other = _read_legacy_runtime_file(self.data_dir, "")
                if int(other["pid"]) != os.getpid():
                    raise ConfigurationError(
                        f"a local platform is already running for {self.data_dir} "
                        f"(pid {other['pid']}, {other.get('api_url')}); stop it first, or use another --data-dir"
                    )
        fd = open_private(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + LOCK_RETRY_S
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigurationError(
                            f"a local platform is already running for {self.data_dir} "
                            f"({_describe_holder(self.data_dir)}); stop it first, or use another --data-dir"
                        ) from None
                    time.sleep(0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _release(self) -> None:
        """Remove our runtime file (never another's), drop the lock, give the umask back."""
        if self._lock_fd is not None:
            path = self.data_dir / RUNTIME_FILE
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if int(json.loads(path.read_text(encoding="utf-8"))["pid"]) == os.getpid():
                    path.unlink()
            os.close(self._lock_fd)  # releases the flock; the lock file itself stays (unlinking races)
            self._lock_fd = None
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    def run_forever(self) -> None:
        """Foreground until Ctrl-C or SIGTERM, then a clean stop."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            self._log(f"received {signal.Signals(signum).name}: finishing batches in progress…")
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.start()
        while not stop.wait(0.5):
            pass
        self.stop()

    # -- state ------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api_key(self) -> str:
        path = self.data_dir / API_KEY_FILE
        if not path.exists():
            private_dir(self.data_dir)
            try:  # created 0600: never readable by others, not even for an instant
                fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass  # another process made it meanwhile: use theirs
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(32))
        return path.read_text(encoding="utf-8").strip()

    def _write_runtime_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "api_url": self.api_url,
            "auth": self.auth,
            "template": str(self.template),
            "started_at": time.time(),
        }
        if self.auth:
            self.api_key()
        # Whole or absent for a reader: written aside, then renamed over.
        tmp = self.data_dir / f".{RUNTIME_FILE}.{os.getpid()}"
        write_private(tmp, json.dumps(info, indent=2))
        os.replace(tmp, self.data_dir / RUNTIME_FILE)

    def idle(self) -> bool:
        """No batch running and nothing visible or in flight in any queue (tests wait on this)."""
        assert self.platform is not None
        with self._busy_lock:
            if self._busy:
                return False
        from docllm.service_layer.outbox import pending

        if pending(self.platform):
            return False  # events committed but not yet published are work still to come
        q = self.platform.local_queue
        return all(q.stats(name).visible == 0 and q.stats(name).in_flight == 0 for name in q.queues)

    def wait_idle(self, timeout_s: float = 60, settle_s: float = 0.3) -> bool:
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.idle():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False

    # -- the outbox relay (OutboxRelayFunction on AWS) ----------------------------
    def _relay_outbox(self, *, min_age_s: float) -> int:
        from docllm.service_layer.outbox import relay

        assert self.platform is not None
        try:
            return relay(self.platform, min_age_s=min_age_s)
        except Exception as e:
            self._log(f"outbox relay: {type(e).__name__}: {e}")
            return 0

    def _outbox_relay(self) -> None:
        from docllm.service_layer.outbox import RELAY_GRACE_S

        while not self._stop.wait(0.5):
            self._relay_outbox(min_age_s=RELAY_GRACE_S)

    # -- CloudWatch alarms and EventBridge Scheduler ---------------------------------------
    def _monitoring_threads(self, p: Platform) -> list[threading.Thread]:
        """The alarm evaluator's thread and one thread per schedule; a definition the local platform
        cannot run (an unsupported alarm, a malformed schedule) fails the start, naming it."""
        from docllm.monitoring.definitions import local_alarms
        from docllm.monitoring.evaluator import LocalAlarmEvaluator
        from docllm.runtime.schedules import parse_schedule

        threads: list[threading.Thread] = []
        definitions = local_alarms(p)
        if definitions.alarms:
            tick_s = _positive_env("DOCLLM_ALARM_TICK_S", ALARM_TICK_S)
            self.alarm_evaluator = LocalAlarmEvaluator(p, definitions.alarms)
            # The first evaluation before anything else runs: new alarms announce their first state now
            # (INSUFFICIENT_DATA -> OK, as CloudWatch does for a new alarm), not amid the first requests.
            self._tick_alarms()
            threads.append(
                threading.Thread(target=self._alarm_loop, args=(tick_s,), name="alarm-evaluator", daemon=True)
            )
        scale = _positive_env("DOCLLM_SCHEDULE_SCALE", 1.0)
        for spec in self.wiring.schedules:
            schedule = parse_schedule(spec.expression, spec.timezone)
            try:
                event = json.loads(spec.input) if spec.input else {}
            except ValueError as e:
                raise ConfigurationError(f"schedule {spec.name}: its Input is not JSON: {e}") from e
            threads.append(
                threading.Thread(
                    target=self._schedule_loop,
                    args=(spec, schedule, event, scale),
                    name=f"schedule-{spec.name}",
                    daemon=True,
                )
            )
        return threads

    def _alarm_loop(self, tick_s: float) -> None:
        while not self._stop.wait(tick_s):
            self._tick_alarms()

    def _tick_alarms(self) -> None:
        try:
            for t in self.alarm_evaluator.tick():
                self._log(f"alarm {t.alarm}: {t.previous.value} -> {t.current.value}: {t.current.reason}")
        except Exception as e:  # the next tick tries again; alarms never stop the platform
            self._log(f"alarm evaluator: {type(e).__name__}: {e}")

    def _schedule_loop(self, spec: ScheduleSpec, schedule: Schedule, event: dict[str, Any], scale: float) -> None:
        started = now = time.time()
        while True:
            due = schedule.next_after(now, started=started, scale=scale)
            if due is None or self._stop.wait(max(0.0, due - time.time())):
                return
            self._fire_schedule(spec, event, scale if schedule.rate_s is not None else 1.0)
            now = max(due, time.time())

    def _fire_schedule(self, spec: ScheduleSpec, event: dict[str, Any], scale: float) -> None:
        """One firing: the target function invoked with the schedule's input (retried as the schedule's
        ``RetryPolicy`` says, with a backoff), or the input sent to the target queue."""
        from docllm.lambda_support import invocation_log_keys

        assert self.platform is not None
        fn = self.wiring.functions.get(spec.target)
        if fn is None:
            self.platform.local_queue.send(spec.target, json.dumps(event))
            return
        handler = self.handlers[fn.name]
        fired = time.monotonic()
        for attempt in range(spec.max_retries + 1):
            context = LocalContext(fn.name, fn.timeout_s)
            with self._busy_lock:
                self._busy += 1
            try:
                with invocation_log_keys(context):
                    handler(json.loads(json.dumps(event)), context)  # a fresh copy: handlers may change it
                return
            except Exception as e:
                self._log(f"schedule {spec.name}: {fn.name} failed (attempt {attempt + 1}): {type(e).__name__}: {e}")
            finally:
                with self._busy_lock:
                    self._busy -= 1
            delay = min(60.0, 2.0**attempt) * scale
            if time.monotonic() - fired + delay > spec.max_event_age_s * scale or self._stop.wait(delay):
                break
        self._log(f"schedule {spec.name}: gave up on this firing of {fn.name}")

    # -- the event source mapping ---------------------------------------------------
    def _worker(self, fn: FunctionSpec, src: SqsSource) -> None:
        from docllm.lambda_support import LAST_FAILURES

        assert self.platform is not None
        queue = self.platform.local_queue
        handler = self.handlers[fn.name]
        idle_sleep = self.poll_interval_s
        while not self._stop.is_set():
            try:
                with self._busy_lock:
                    messages = queue.receive(src.queue, max_messages=src.batch_size)
                    if messages:
                        self._busy += 1
            except Exception as e:
                self._log(f"{fn.name}: receive from {src.queue} failed: {type(e).__name__}: {e}")
                messages = []
            if not messages:
                self._stop.wait(idle_sleep)
                idle_sleep = min(0.25, idle_sleep * 1.5)
                continue
            idle_sleep = self.poll_interval_s
            try:
                self._invoke(fn, src, handler, messages, LAST_FAILURES)
            except Exception as e:
                # its visibility timeout ends, as an unacknowledged SQS message does; the worker lives on.
                self._log(f"{fn.name}: acknowledging a batch of {src.queue} failed: {type(e).__name__}: {e}")
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _invoke(
        self, fn: FunctionSpec, src: SqsSource, handler: Handler, messages: list[Message], reasons: dict[str, str]
    ) -> None:
        from docllm.lambda_support import invocation_log_keys

        assert self.platform is not None
        queue = self.platform.local_queue
        context = LocalContext(fn.name, fn.timeout_s)
        try:
            # Worker threads invoke concurrently: their records name their own invocation.
            with invocation_log_keys(context):
                response = handler(sqs_event(src.queue, messages), context) or {}
        except Exception as e:  # the whole invocation failed: every message is retried
            for m in messages:
                # Every record failed (Powertools raises then): each keeps its own reason.
                reason = reasons.pop(m.message_id, None) or f"{type(e).__name__}: {e}"
                queue.retry_later(src.queue, m, reason=reason)
            self._log(f"{fn.name}: invocation failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])} if src.report_failures else set()
        for m in messages:
            if m.message_id in failed:
                reason = reasons.pop(m.message_id, "the handler reported this record as failed")
                queue.retry_later(src.queue, m, reason=reason)
                self._log(f"{fn.name}: message {m.message_id[:8]} failed (attempt {m.receive_count}): {reason}")
            else:
                queue.delete(src.queue, m.receipt)


def _positive_env(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds (or factor), got {text!r}")
    return value


def lock_holder(data_dir: Path) -> int | None:
    """The pid of the runtime holding ``data_dir``'s lock (0 while it has not written it yet), or
    None when no runtime holds it. Takes the lock shared for an instant to find out."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe_holder(data_dir: Path) -> str:
    """``pid N, http://…`` of the runtime holding the lock, as far as it has got."""
    pid = 0
    deadline = time.monotonic() + 1.0
    while True:  # a runtime writes its pid the instant after it takes the lock
        pid = lock_holder(data_dir) or 0
        if pid or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    try:
        info = json.loads((Path(data_dir) / RUNTIME_FILE).read_text(encoding="utf-8"))
        if pid and int(info["pid"]) == pid:
            return f"pid {pid}, {info['api_url']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return f"pid {pid}, still starting" if pid else "still starting"


def read_runtime_file(data_dir: Path) -> dict[str, Any]:
    """What ``docllm up`` wrote; raises :class:`PlatformNotRunningError` with the fix when it is not running.

    Running means: a runtime holds the data directory's lock and ``runtime.json`` is the one it
    wrote. Whether the pid in a leftover ``runtime.json`` is alive says nothing (pids are reused).
    """
    path = Path(data_dir) / RUNTIME_FILE
    hint = f"start it with:  docllm up --data-dir {data_dir}"
    if not (Path(data_dir) / LOCK_FILE).exists():
        return _read_legacy_runtime_file(Path(data_dir), hint)
    holder = lock_holder(Path(data_dir))
    if holder is None:
        if path.exists():
            raise PlatformNotRunningError(f"the local platform for {data_dir} stopped without cleaning up; {hint}")
        raise PlatformNotRunningError(f"the local platform is not running for {data_dir}; {hint}")
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        ours = int(info["pid"]) == holder
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        raise PlatformNotRunningError(
            f"the local platform for {data_dir} is starting (pid {holder or '?'}); try again in a moment"
        )
    return info


def _read_legacy_runtime_file(data_dir: Path, hint: str) -> dict[str, Any]:
    """A data directory without a lock file: only a runtime of an older docllm can be running there."""
    path = data_dir / RUNTIME_FILE
    if not path.exists():
        raise PlatformNotRunningError(f"the local platform is not running for {data_dir}; {hint}")
    info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, ValueError):
        raise PlatformNotRunningError(
            f"the local platform for {data_dir} stopped without cleaning up; {hint}"
        ) from None
    except PermissionError:
        pass
    return info

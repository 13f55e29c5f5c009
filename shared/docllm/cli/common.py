"""What every CLI verb shares: finding the platform, showing data literally, JSON, errors, argument rules.

Showing data
    Everything that comes from data (keys, chunk text, reasons, titles, event details) is printed
    through :func:`lit`, which returns a :class:`rich.text.Text`: rich never parses markup or emoji
    codes in a ``Text``, and :func:`visible` first turns control characters, ANSI escapes,
    bidirectional controls and lone surrogates into visible escapes (``\\x1b``, ``\\u202e``), so
    nothing from data styles, moves or rewrites the terminal. Constant text is assembled around it
    with :func:`line`. Tables go through :func:`print_table`: full cells (nothing cut) on a
    terminal, tab-separated values otherwise.

JSON and errors
    ``--json`` output is :func:`emit_json` on stdout; a failing verb raises :class:`CliError` (or a
    :class:`~docllm.exceptions.DocllmError`) and ``main`` prints one line on stderr and, under
    ``--json``, ``{"error": "..."}`` on stdout, with the exit codes below.

Arguments
    The argparse ``type=`` functions (:func:`port`, :func:`int_range`, :func:`float_range`,
    :func:`service_name`, :func:`service_csv`, :func:`family_name`) validate at the edge.

This module imports nothing heavy at import time (``docllm --help`` builds the parser from it).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
import unicodedata
from argparse import ArgumentTypeError, Namespace
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.progress import Progress

    from docllm.bootstrap import Platform

# -- exit codes (docs/cli.md) ------------------------------------------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1  #: the work itself failed or did not finish (a request failed, a wait timed out)
EXIT_USAGE = 2  #: invalid arguments or input (argparse, a bad file, a refused query)
EXIT_NOT_FOUND = 3  #: a named thing does not exist (document, model, dataset, queue, file)
EXIT_NOT_RUNNING = 4  #: no local platform runs for the data directory
EXIT_INTERNAL = 70  #: an unexpected error (a bug): one line, traceback with DOCLLM_DEBUG=1
EXIT_INTERRUPTED = 130  #: Ctrl-C
EXIT_BROKEN_PIPE = 141  #: stdout closed by the reader (``| head``), as a SIGPIPE death reports it


class CliError(Exception):
    """A verb's failure with its exit code; ``main`` prints it as one line (and as JSON under --json)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- showing data literally ---------------------------------------------------------------------------
# Format characters that are not bidirectional or invisible controls: ZWNJ and ZWJ join scripts and emoji.
_KEEP_FORMAT = {"\u200c", "\u200d"}
_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _hidden(ch: str) -> bool:
    """Characters a terminal would act on or hide: controls (C0, DEL, C1, so ANSI escapes too), format
    characters (bidirectional marks and overrides, zero-width spaces, BOM), lone surrogates (undecodable
    file-name bytes) and the line/paragraph separators."""
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cs", "Zl", "Zp") or (cat == "Cf" and ch not in _KEEP_FORMAT)


def _escape_char(ch: str, multiline: bool) -> str:
    if multiline and ch in "\n\t":
        return ch
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_MAYBE_HIDDEN = re.compile(r"[^\x20-\x7e\u00a0-\u00ac\u00ae-\u05ff]")  # fast path: printable ASCII/Latin…


def visible(value: object, *, multiline: bool = False) -> str:
    """``value`` as text whose every character shows as itself: control, format and bidirectional
    characters become escapes (``\\x1b``, ``\\u202e``); ``multiline`` keeps newlines and tabs.

    >>> visible("a\\x1b[31mb\\u202ec\\n")
    'a\\\\x1b[31mb\\\\u202ec\\\\n'
    >>> visible("[red]root:x:0[/red]")
    '[red]root:x:0[/red]'
    """
    s = "" if value is None else str(value)
    if not _MAYBE_HIDDEN.search(s):
        return s
    return "".join(_escape_char(ch, multiline) if _hidden(ch) else ch for ch in s)


def lit(value: object, style: str = "", *, multiline: bool = False) -> Text:
    """Data shown literally: a ``Text`` (no markup, no emoji codes) of :func:`visible` ``value``.
    The one way data reaches the terminal in every verb."""
    return Text(visible(value, multiline=multiline), style=style)


def line(*parts: str | Text | tuple[str, str]) -> Text:
    """A line assembled from constant strings (never parsed as markup), ``(text, style)`` pairs and
    :func:`lit` pieces of data."""
    return Text.assemble(*parts)


def one_line(message: object) -> str:
    """An error message on one line, literally (newlines inside become spaces)."""
    return visible(" ".join(str(message).splitlines()))


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich exits with status 1 on its own; main handles it like every other broken pipe instead.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "broken pipe")


# emoji=False: `:x:` in data stays `:x:`; highlight=False: no guessing at numbers and paths; soft_wrap:
# rich never inserts line breaks into a line (the terminal wraps; a pipe gets the line whole).
console = _Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)
out = _Console(emoji=False, highlight=False, soft_wrap=True)


def print_error(message: object, *, json_mode: bool = False) -> None:
    """One line on stderr; under ``--json`` also ``{"error": message}`` on stdout."""
    console.print(line(("error: ", "red"), one_line(message)))
    if json_mode:
        emit_json({"error": " ".join(str(message).splitlines())})


def warn(message: object) -> None:
    console.print(line(("warning: ", "yellow"), one_line(message)))


@dataclass(frozen=True)
class Col:
    """A table column; ``copy`` marks an id people copy (kept on one line while the width allows)."""

    name: str
    copy: bool = False
    justify: str = "left"


def print_table(
    columns: Sequence[str | Col], rows: Iterable[Sequence[object]], *, console_: Console | None = None
) -> None:
    """Rows of data: on a terminal a table whose cells fold instead of being cut (full ids), otherwise
    one tab-separated line per row under a header line. Cells are data (shown with :func:`lit`)
    unless they are already a ``Text``."""
    con = console_ or out
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [[c if isinstance(c, Text) else lit(c) for c in row] for row in rows]
    if not con.is_terminal:
        # Written past rich, which would expand the tabs; tabs and newlines inside cells are escaped.
        con.file.write("\t".join(c.name for c in cols) + "\n")
        for row in cells:
            con.file.write("\t".join(visible(c.plain) for c in row) + "\n")
        return
    t = Table(*[c.name for c in cols])
    # Ids stay on one line, first id column first, while they fit beside the other columns (3
    # characters each at least, plus borders and padding); the rest fold within the terminal's width.
    room = con.width - (3 * len(cols) + 1) - 3 * sum(not c.copy for c in cols)
    whole: dict[int, int] = {}
    for i, c in enumerate(cols):
        if c.copy:
            width = max(max((len(row[i].plain) for row in cells), default=0), len(c.name))
            if width <= room:
                whole[i], room = width, room - width
            else:
                room -= min(room, 6)
    for i, (spec, column) in enumerate(zip(cols, t.columns, strict=True)):
        column.overflow = "fold"
        column.justify = spec.justify  # type: ignore[assignment]
        if i in whole:
            column.min_width = whole[i]
    for row in cells:
        t.add_row(*row)
    con.print(t)


def progress_bars(*, disable: bool = False) -> Progress:
    """Counted bars on stderr (stdout stays clean for ``--json``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def emit_json(data: Any) -> None:
    """``data`` as JSON on stdout (ASCII-escaped: no raw control or bidirectional character either)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def json_mode(args: Namespace) -> bool:
    return bool(getattr(args, "json", False))


# -- argument rules (argparse ``type=`` functions) ----------------------------------------------------
#: A service is one safe key segment: it names the first segment of every key ingested under it.
SERVICE_RULE = "1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_service(value: str) -> str:
    """``value`` if it is a valid service name, else :class:`ArgumentTypeError` with the rule.

    >>> check_service("s3")
    's3'
    """
    if not _SERVICE.fullmatch(value):
        raise ArgumentTypeError(f"invalid service {value!r}: a service is {SERVICE_RULE}")
    return value


def service_name(value: str) -> str:
    return check_service(value)


def service_csv(value: str) -> str:
    """Comma-separated service names, each checked; returned as ``a,b`` (empty items dropped)."""
    return ",".join(check_service(v.strip()) for v in value.split(",") if v.strip())


def port(value: str) -> int:
    n = _int(value)
    if not 0 <= n <= 65535:
        raise ArgumentTypeError(f"invalid port {value!r}: 0-65535 (0 picks a free one)")
    return n


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ArgumentTypeError(f"invalid integer {value!r}") from None


def _float(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise ArgumentTypeError(f"invalid number {value!r}") from None
    if not math.isfinite(f):
        raise ArgumentTypeError(f"invalid number {value!r}: must be finite")
    return f


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (no upper bound when ``hi`` is None)."""

    def parse(value: str) -> int:
        n = _int(value)
        if n < lo or (hi is not None and n > hi):
            raise ArgumentTypeError(f"{value!r} is out of range: {_bounds(lo, hi)}")
        return n

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float | None = None, *, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number ≥ ``lo`` (> ``lo`` when ``lo_open``) and ≤ ``hi``."""

    def parse(value: str) -> float:
        f = _float(value)
        if (f <= lo if lo_open else f < lo) or (hi is not None and f > hi):
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            raise ArgumentTypeError(f"{value!r} is out of range: {low}" + (f" and <= {hi:g}" if hi is not None else ""))
        return f

    parse.__name__ = "number"
    return parse


def percentage(value: str) -> float:
    """An argparse type: a share of traffic, ``10%`` or ``10``, more than 0 and less than 100."""
    f = _float(value.strip().removesuffix("%"))
    if not 0 < f < 100:
        raise ArgumentTypeError(f"{value!r} is out of range: more than 0% and less than 100%")
    return f


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: str) -> float:
    """An argparse type: a positive duration in seconds, written ``300``, ``300s``, ``5m`` or ``1h``."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    f = _float(text[:-1] if unit is not None else text) * (unit or 1.0)
    if f <= 0:
        raise ArgumentTypeError(f"invalid duration {value!r}: must be positive (e.g. 300s, 5m, 1h)")
    return f


def _bounds(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi is not None else f">= {lo}"


def family_names() -> list[str]:
    from docllm.training.families import load_families

    return sorted(load_families())


def family_name(value: str) -> str:
    """An argparse type: a model family of ``families.yaml``."""
    names = family_names()
    if value not in names:
        raise ArgumentTypeError(f"unknown model family {value!r}; known: {', '.join(names)}")
    return value


# -- the data directory and the running platform ---------------------------------------------------
def data_dir(args: Namespace) -> Path:
    from docllm.settings import data_dir_from_env

    return data_dir_from_env(getattr(args, "data_dir", None))


def check_data_dir(d: Path, *, create: bool) -> None:
    """A usable data directory: a directory (``create``: made when missing, and writable), else
    :class:`CliError` with :data:`EXIT_USAGE`."""
    if d.exists() and not d.is_dir():
        raise CliError(f"--data-dir {d} is not a directory", EXIT_USAGE)
    if not create:
        return
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the data directory {d}: {e.strerror or e}", EXIT_USAGE) from None
    probe = d / f".docllm-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise CliError(f"the data directory {d} is not writable: {e.strerror or e}", EXIT_USAGE) from None


def ensure_running(p: Platform) -> None:
    """Raise a :class:`CliError` (exit 4) when the platform a verb waits on has stopped: a wait must not
    outlive the runtime that would answer it."""
    from docllm.exceptions import PlatformNotRunningError
    from docllm.runtime.local import read_runtime_file

    try:
        read_runtime_file(p.data_dir)
    except PlatformNotRunningError as e:
        raise CliError(f"the local platform stopped while waiting: {e}", EXIT_NOT_RUNNING) from None


def running_platform(args: Namespace) -> tuple[Platform, dict[str, Any]]:
    """The platform of the running ``docllm up`` (raises PlatformNotRunningError with the fix)."""
    from docllm.bootstrap import Platform, reset_platforms
    from docllm.runtime.local import read_runtime_file
    from docllm.settings import Settings

    d = data_dir(args)
    info = read_runtime_file(d)
    os.environ["DOCLLM_TEMPLATE"] = info["template"]
    reset_platforms()
    env = dict(os.environ)
    env.update({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(d)})
    return Platform(Settings.from_env(env), template=Path(info["template"])), info


def api_get(info: dict[str, Any], data: Path, path: str, params: dict[str, Any]) -> tuple[int, Any]:
    """GET the local API; an API that does not answer raises PlatformNotRunningError."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from docllm.exceptions import PlatformNotRunningError
    from docllm.runtime.local import API_KEY_FILE

    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{info['api_url']}{path}?{query}")
    if info.get("auth"):
        req.add_header("Authorization", "Bearer " + (data / API_KEY_FILE).read_text(encoding="utf-8").strip())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, _json_body(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, _json_body(e.read())
    except urllib.error.URLError as e:
        raise PlatformNotRunningError(
            f"the local API at {info['api_url']} does not answer ({e.reason}); is docllm up running?"
        ) from None


def api_post(
    info: dict[str, Any], data: Path, path: str, body: dict[str, Any], *, timeout_s: float = 120
) -> tuple[int, Any]:
    """POST JSON to the local API; an API that does not answer raises PlatformNotRunningError."""
    import urllib.error
    import urllib.request

    from docllm.exceptions import PlatformNotRunningError
    from docllm.runtime.local import API_KEY_FILE

    req = urllib.request.Request(
        f"{info['api_url']}{path}",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if info.get("auth"):
        req.add_header("Authorization", "Bearer " + (data / API_KEY_FILE).read_text(encoding="utf-8").strip())
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, _json_body(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, _json_body(e.read())
    except urllib.error.URLError as e:
        raise PlatformNotRunningError(
            f"the local API at {info['api_url']} does not answer ({e.reason}); is docllm up running?"
        ) from None


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}

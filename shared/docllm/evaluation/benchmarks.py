"""Custom benchmarks: files uploaded under the raw bucket's ``benchmarks/`` prefix, run for every candidate.

Two formats (docs/evaluation.md, "Custom benchmarks", has examples of both):

* **JSONL**: one object per line, ``{"prompt", "expected", "metric", "tags", "max_tokens", "until"}``;
  the benchmark's name is the file's key without ``.jsonl``.
* **lm-evaluation-harness task YAML** (``.yaml``/``.yml``) of ``output_type`` ``generate_until`` or
  ``loglikelihood`` whose data are local files beside it: ``dataset_path: json`` with
  ``dataset_kwargs.data_files`` naming JSON Lines (or JSON array) files relative to the YAML's folder.
  Prompts are rendered from ``doc_to_text`` / ``doc_to_target`` / ``description`` (a field name or a
  Jinja2 template, rendered in a sandbox). The supported subset is listed in :data:`YAML_FIELDS`;
  anything else is refused with a :class:`BenchmarkError` that names the file and the field, never
  silently run differently. A Hugging Face Hub ``dataset_path`` is refused: nothing leaves the
  organisation.

Benchmark files are user input run for every candidate: any failure of one (a template that
raises, a malformed ``regex_replace`` pattern, a value of an unexpected type) becomes that file's
:class:`BenchmarkError`, and a prompt or answer over :data:`MAX_RENDERED_CHARS` is refused.

Which files are benchmarks: every YAML task (except YAMLs another YAML ``include`` s) and every
``.jsonl`` file that no YAML uses as a data file or include. ``.md`` and ``.txt`` files are notes
and ignored, and so are :data:`RESERVED` files (the scheduled canary's questions share the prefix,
the one the ingest stage never reads); any other file that no YAML uses is an error.

This module is pure (no model): :func:`parse_benchmarks` turns files into items, the evaluation
job generates, then :func:`score_generation` / :func:`score_loglikelihood` and :func:`aggregate`
turn outputs into metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import FilterArgumentError, SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

from docllm.evaluation import scoring
from docllm.exceptions import PermanentError

_T = TypeVar("_T")
Kind = Literal["generate_until", "loglikelihood"]
Format = Literal["jsonl", "lm-eval-yaml"]

GENERATION_METRICS: dict[str, Any] = {
    "exact_match": scoring.exact_match,
    "token_f1": scoring.token_f1,
    "contains": scoring.contains,
}
"""Metrics of generated answers: ``f(generation, expected) -> float`` (:mod:`docllm.evaluation.scoring`)."""
LOGLIKELIHOOD_METRICS = ("perplexity", "acc")
"""Metrics of ``loglikelihood`` tasks, with lm-evaluation-harness's meaning (its default pair)."""

DEFAULT_MAX_TOKENS = 64
"""Generation budget of a JSONL item without ``max_tokens``."""
DEFAULT_JSONL_UNTIL: tuple[str, ...] = ("\n",)
"""JSONL answers are one line unless the item says otherwise."""
LM_EVAL_MAX_GEN_TOKS = 256
"""lm-evaluation-harness's ``max_gen_toks`` default."""
MAX_TOKENS_LIMIT = 4096
MAX_ITEMS = 5000
"""Per benchmark: it runs for every candidate, so it must stay cheap."""
MAX_INCLUDE_DEPTH = 4
MAX_RENDERED_CHARS = 20_000
"""Longest prompt or expected answer (rendered): far past any model's context here; a template that
renders more is a mistake (or a bomb), refused before it costs memory for every candidate."""
MAX_REGEX_CHARS = 500
"""Longest pattern ``regex_replace`` compiles: lm-eval tasks use short ones."""

JSONL_FIELDS = frozenset({"prompt", "expected", "metric", "tags", "max_tokens", "until", "id"})
YAML_FIELDS = frozenset(
    {
        # what we honour
        "task", "tag", "output_type", "dataset_path", "dataset_name", "dataset_kwargs", "test_split",
        "validation_split", "doc_to_text", "doc_to_target", "description", "target_delimiter",
        "fewshot_delimiter", "generation_kwargs", "metric_list", "include", "num_fewshot", "repeats",
        "filter_list",
        # accepted and without effect on a zero-shot, single-sample run
        "task_alias", "training_split", "fewshot_split", "metadata", "should_decontaminate",
        "doc_to_decontamination_query", "batch_size",
    }
)  # fmt: skip
"""The lm-evaluation-harness task fields accepted; any other field is refused by name."""
_GENERATION_KWARGS = frozenset({"until", "max_gen_toks", "do_sample", "temperature"})
_METRIC_KEYS = frozenset({"metric", "aggregation", "higher_is_better", "ignore_case", "ignore_punctuation"})
_NOOP_FILTERS = frozenset({"take_first", "remove_whitespace"})
_NOTES = (".md", ".txt")
RESERVED = frozenset({"canary.jsonl"})
"""Files under ``benchmarks/`` that are not benchmarks: the scheduled canary's question set
(:data:`docllm.monitoring.canary.CANARY_SET_KEY`, its own format), uploaded with ``docllm canary set``."""


class BenchmarkError(PermanentError):
    """A benchmark file that cannot run, with the file (and field or line) that is wrong."""

    def __init__(
        self,
        file: str,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        related: Sequence[str] = (),
    ) -> None:
        where = file + (f":{line}" if line is not None else "") + (f" ({field})" if field else "")
        super().__init__(f"{where}: {message}")
        self.file = file
        self.field = field
        self.line = line
        self.related = tuple(related)
        """Other files the benchmark uses (its data files and includes)."""


class BenchmarkItem(BaseModel):
    """One prompt of a benchmark with what a right answer is and how it is scored."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    """What the model continues (for ``loglikelihood``: the context)."""
    expected: str
    """The expected answer (for ``loglikelihood``: the target, without ``target_delimiter``)."""
    metrics: tuple[str, ...] = ("exact_match",)
    tags: tuple[str, ...] = ()
    max_tokens: int = DEFAULT_MAX_TOKENS
    until: tuple[str, ...] = DEFAULT_JSONL_UNTIL
    """Generation stops before the first of these strings."""
    target_delimiter: str = ""

    @property
    def metric(self) -> str:
        """The first (for JSONL items, the only) metric."""
        return self.metrics[0]

    @property
    def continuation(self) -> str:
        """What a ``loglikelihood`` request scores after the prompt: ``target_delimiter + expected``."""
        return self.target_delimiter + self.expected


class Benchmark(BaseModel):
    """One benchmark file, parsed: its items and where they came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    source_key: str
    """The defining file's key relative to ``benchmarks/``."""
    kind: Kind
    format: Format
    items: tuple[BenchmarkItem, ...]
    metrics: tuple[str, ...]
    """The metrics reported for the benchmark (per item, and ``perplexity`` over a loglikelihood task)."""
    data_files: tuple[str, ...] = ()
    """Files (relative to ``benchmarks/``) the YAML read its items and includes from."""
    sha256: str
    """Digest of the defining file and its data files, for the report and the manifest."""


# ------------------------------------------------------------------------------------------------ parsing


def parse_benchmarks(files: Mapping[str, bytes]) -> tuple[list[Benchmark], list[BenchmarkError]]:
    """Every benchmark among ``files`` (keys relative to ``benchmarks/``), and every file that failed.

    One bad file never hides the others: its error is returned and the rest still run. Benchmarks
    come in key order; a name already taken by an earlier file is an error of the later one.

    Example
    -------
    >>> line = b'{"prompt": "The maximum object size is", "expected": "5 TB", "tags": ["limits"]}'
    >>> benches, errors = parse_benchmarks({"faq.jsonl": line, "notes.md": b"..."})
    >>> [(b.name, b.kind, len(b.items)) for b in benches], errors
    ([('faq', 'generate_until', 1)], [])
    """
    yaml_keys = [k for k in sorted(files) if _is_yaml(k)]
    loaded: dict[str, Any] = {}
    yaml_errors: dict[str, BenchmarkError] = {}
    for key in yaml_keys:
        try:
            # Raw: a YAML refused later (a !function, say) still claims its data files.
            loaded[key] = _guarded(key, partial(_load_yaml_raw, key, files[key]))
        except BenchmarkError as e:
            yaml_errors[key] = e
    used: dict[str, set[str]] = {k: _references(k, cfg) for k, cfg in loaded.items()}
    included = {ref for k, cfg in loaded.items() if (ref := _include_ref(k, cfg)) is not None}
    used_by_any = set().union(*used.values()) if used else set()

    out: list[tuple[str, Benchmark | BenchmarkError]] = []
    for key in sorted(files):
        if key in yaml_errors:  # not even YAML
            out.append((key, yaml_errors[key]))
        elif _is_yaml(key):
            if key in included:
                continue
            try:
                out.append((key, _guarded(key, partial(_yaml_benchmark, key, files))))
            except BenchmarkError as e:
                e.related = tuple(sorted(used.get(key, ())))
                out.append((key, e))
        elif key in used_by_any or key in RESERVED or key.lower().endswith(_NOTES):
            continue
        elif key.lower().endswith(".jsonl"):
            try:
                out.append((key, _guarded(key, partial(_jsonl_benchmark, key, files[key]))))
            except BenchmarkError as e:
                out.append((key, e))
        else:
            msg = "not a benchmark: expected a .jsonl or .yaml file, or a data file a YAML task names"
            out.append((key, BenchmarkError(key, msg)))

    benchmarks: list[Benchmark] = []
    errors: list[BenchmarkError] = []
    names: dict[str, str] = {}
    for key, result in out:
        if isinstance(result, BenchmarkError):
            errors.append(result)
        elif result.name in names:
            taken = f"benchmark name {result.name!r} is already used by {names[result.name]}"
            errors.append(BenchmarkError(key, taken))
        else:
            names[result.name] = key
            benchmarks.append(result)
    return benchmarks, errors


def validate_benchmark_file(name: str, body: bytes, siblings: Mapping[str, bytes]) -> list[Benchmark]:
    """Check one file before it is uploaded as ``benchmarks/<name>``; raise :class:`BenchmarkError` if bad.

    ``siblings`` are the files already under ``benchmarks/`` (and any uploaded along with this one).
    Returns the benchmarks the file defines or takes part in: a YAML task its own benchmark, a
    data file the YAML tasks that read it (re-checked with the new content), a JSONL file its
    benchmark. A file that is none of these is refused.

    Example
    -------
    >>> try:
    ...     validate_benchmark_file("faq.jsonl", b'{"prompt": "Max object size:"}', {})
    ... except BenchmarkError as e:
    ...     print(e)
    faq.jsonl:1 (expected): missing: every item needs a string
    """
    if name in RESERVED:
        raise BenchmarkError(name, "reserved for the scheduled canary's questions: upload it with docllm canary set")
    files = {**siblings, name: body}
    # parse_benchmarks turns every failure of a file into its BenchmarkError; the guard is for a
    # failure outside any one file, so that `docllm benchmarks add` still prints a clear error.
    benchmarks, errors = _guarded(name, partial(parse_benchmarks, files))
    mine = [e for e in errors if e.file == name or name in e.related]
    if mine:
        raise mine[0]
    found = [b for b in benchmarks if b.source_key == name or name in b.data_files]
    if not found:
        raise BenchmarkError(name, "not a benchmark: expected a .jsonl or .yaml file, or a data file a YAML task names")
    return found


def _guarded(key: str, parse: Callable[[], _T]) -> _T:
    """``parse()``, with any exception but a :class:`BenchmarkError` turned into one for ``key``.

    Benchmark files are user input run for every candidate: whatever one does (a template that
    divides by zero, a value of an unexpected type, nesting too deep for the parser), the cost is
    that file's ``invalid`` result, never the evaluation or the other benchmarks."""
    try:
        return parse()
    except BenchmarkError:
        raise
    except Exception as e:  # any failure of user input is that file's error
        raise BenchmarkError(key, f"cannot be read: {type(e).__name__}: {e}") from e


def _is_yaml(key: str) -> bool:
    return key.lower().endswith((".yaml", ".yml"))


class _Unsupported:
    """A YAML value with a custom tag (``!function utils.process``): Python code we will not run."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


class _Loader(yaml.SafeLoader):
    pass


def _construct_tagged(loader: yaml.Loader, suffix: str, node: yaml.Node) -> _Unsupported:
    return _Unsupported("!" + suffix)


_Loader.add_multi_constructor("!", _construct_tagged)


def _load_yaml(key: str, body: bytes) -> dict[str, Any]:
    cfg = _load_yaml_raw(key, body)
    for field, value in cfg.items():
        if _has_tag(value):
            raise BenchmarkError(key, "Python functions (!function) are not run in benchmarks", field=str(field))
    return cfg


def _load_yaml_raw(key: str, body: bytes) -> dict[str, Any]:
    try:
        cfg = yaml.load(body.decode("utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise BenchmarkError(key, f"not valid UTF-8 YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise BenchmarkError(key, "a task YAML must be a mapping of fields")
    return cfg


def _has_tag(value: Any) -> bool:
    if isinstance(value, _Unsupported):
        return True
    if isinstance(value, dict):
        return any(_has_tag(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_tag(v) for v in value)
    return False


def _resolve(yaml_key: str, ref: Any, *, field: str) -> str:
    """A file named in a YAML, as a key relative to ``benchmarks/``: relative to the YAML's folder."""
    if not isinstance(ref, str) or not ref.strip():
        raise BenchmarkError(yaml_key, f"expected a file name, got {ref!r}", field=field)
    if "://" in ref or ref.startswith(("/", "hf:", "~")):
        raise BenchmarkError(
            yaml_key,
            f"{ref!r}: only local data files beside the YAML are supported: nothing leaves the organisation",
            field=field,
        )
    key = posixpath.normpath(posixpath.join(posixpath.dirname(yaml_key), ref))
    if key.startswith("../") or key == "..":
        raise BenchmarkError(yaml_key, f"{ref!r} points outside benchmarks/", field=field)
    return key


def _include_ref(key: str, cfg: Mapping[str, Any]) -> str | None:
    ref = cfg.get("include")
    try:
        return _resolve(key, ref, field="include") if ref is not None else None
    except Exception:  # best effort: _merged_config reports what is wrong
        return None


def _data_file_refs(key: str, cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """``split -> [file keys]`` of ``dataset_kwargs.data_files``; a plain file or list is split ``train``
    (as ``datasets.load_dataset("json", data_files=...)`` names it)."""
    kwargs = cfg.get("dataset_kwargs")
    if kwargs is None:
        raise BenchmarkError(key, "missing: name the data with dataset_kwargs.data_files", field="dataset_kwargs")
    if not isinstance(kwargs, dict):
        raise BenchmarkError(key, "must be a mapping", field="dataset_kwargs")
    extra = sorted(set(kwargs) - {"data_files"})
    if extra:
        raise BenchmarkError(key, f"only data_files is supported, not {extra}", field="dataset_kwargs")
    data_files = kwargs.get("data_files")
    field = "dataset_kwargs.data_files"
    if isinstance(data_files, str | list):
        data_files = {"train": data_files}
    if not isinstance(data_files, dict) or not data_files:
        raise BenchmarkError(key, "expected a file, a list of files or a mapping split -> files", field=field)
    out: dict[str, list[str]] = {}
    for split, refs in data_files.items():
        refs_list = refs if isinstance(refs, list) else [refs]
        if not refs_list:
            raise BenchmarkError(key, f"split {split!r} names no file", field=field)
        out[str(split)] = [_resolve(key, r, field=f"{field}.{split}") for r in refs_list]
    return out


def _references(key: str, cfg: Mapping[str, Any]) -> set[str]:
    """Best effort, for deciding which files are data: every file the YAML names (errors come later)."""
    refs: set[str] = set()
    if (inc := _include_ref(key, cfg)) is not None:
        refs.add(inc)
    try:
        for split_refs in _data_file_refs(key, cfg).values():
            refs.update(split_refs)
    except Exception:  # best effort: _yaml_benchmark reports what is wrong
        pass
    return refs


def _merged_config(key: str, files: Mapping[str, bytes]) -> tuple[dict[str, Any], list[str]]:
    """The YAML with its ``include`` chain applied (the including file's fields win)."""
    chain: list[str] = []
    cfg = _load_yaml(key, files[key])
    merged: dict[str, Any] = {}
    layers = [cfg]
    current_key, current = key, cfg
    while (ref := current.get("include")) is not None:
        base_key = _resolve(current_key, ref, field="include")
        if base_key in chain or base_key == key:
            raise BenchmarkError(key, f"include cycle through {base_key}", field="include")
        if len(chain) >= MAX_INCLUDE_DEPTH:
            raise BenchmarkError(key, f"more than {MAX_INCLUDE_DEPTH} nested includes", field="include")
        if base_key not in files:
            raise BenchmarkError(key, f"included file {base_key} is not under benchmarks/", field="include")
        chain.append(base_key)
        current_key, current = base_key, _load_yaml(base_key, files[base_key])
        layers.append(current)
    for layer in reversed(layers):
        merged.update({k: v for k, v in layer.items() if k != "include"})
    return merged, chain


def _yaml_benchmark(key: str, files: Mapping[str, bytes]) -> Benchmark:
    cfg, includes = _merged_config(key, files)
    if isinstance(cfg.get("task"), list) or "group" in cfg:
        raise BenchmarkError(key, "task groups are not supported: upload one YAML per task", field="group")
    unknown = sorted(set(cfg) - YAML_FIELDS)
    if unknown:
        raise BenchmarkError(key, "not supported (see docs/evaluation.md for the supported fields)", field=unknown[0])
    name = cfg.get("task")
    if not isinstance(name, str) or not name.strip():
        raise BenchmarkError(key, "missing: every task needs a name", field="task")
    kind = cfg.get("output_type", "generate_until")
    if kind not in ("generate_until", "loglikelihood"):
        raise BenchmarkError(key, f"{kind!r}: only generate_until and loglikelihood are supported", field="output_type")
    if cfg.get("dataset_path") != "json":
        raise BenchmarkError(
            key,
            f"{cfg.get('dataset_path')!r}: only local data files are supported: nothing leaves the organisation "
            "(use dataset_path: json with dataset_kwargs.data_files)",
            field="dataset_path",
        )
    if cfg.get("dataset_name") is not None:
        raise BenchmarkError(key, "must be null for local json data", field="dataset_name")
    _require(key, cfg, "num_fewshot", lambda v: v in (None, 0), "only zero-shot (0) is supported")
    _require(key, cfg, "repeats", lambda v: v in (None, 1), "only 1 is supported")
    _check_filters(key, cfg.get("filter_list"))

    splits = _data_file_refs(key, cfg)
    split = cfg.get("test_split") or cfg.get("validation_split")
    if split is None:
        raise BenchmarkError(
            key, "missing: name the split to evaluate (test_split or validation_split)", field="test_split"
        )
    if split not in splits:
        raise BenchmarkError(
            key, f"split {split!r} is not among data_files splits {sorted(splits)}", field="test_split"
        )
    metrics = _metric_list(key, cfg.get("metric_list"), kind)
    target_delimiter = _string(key, cfg, "target_delimiter", " ")
    fewshot_delimiter = _string(key, cfg, "fewshot_delimiter", "\n\n")
    description = _string(key, cfg, "description", "")
    until, max_tokens = _generation_kwargs(key, cfg.get("generation_kwargs"), kind, fewshot_delimiter)
    tags = _tags(key, cfg.get("tag"), field="tag")
    doc_to_text = _template(key, cfg, "doc_to_text")
    doc_to_target = _template(key, cfg, "doc_to_target")
    desc_template = _compile(key, "description", description) if description else None

    items: list[BenchmarkItem] = []
    digest = hashlib.sha256(files[key])
    for inc in includes:
        digest.update(files[inc])
    for data_key in splits[split]:
        if data_key not in files:
            missing = f"data file {data_key} is not under benchmarks/"
            raise BenchmarkError(key, missing, field="dataset_kwargs.data_files")
        digest.update(files[data_key])
        for line, doc in _data_docs(data_key, files[data_key]):
            text = doc_to_text.render(data_key, line, doc)
            if desc_template is not None:
                text = _Template.render_compiled(desc_template, data_key, line, doc, "description") + text
            target = doc_to_target.render(data_key, line, doc)
            _check_length(data_key, line, "doc_to_text", text)
            _check_length(data_key, line, "doc_to_target", target)
            items.append(
                BenchmarkItem(
                    prompt=text,
                    expected=target,
                    metrics=metrics,
                    tags=tags,
                    max_tokens=max_tokens,
                    until=until,
                    target_delimiter=target_delimiter if kind == "loglikelihood" else "",
                )
            )
            if len(items) > MAX_ITEMS:
                raise BenchmarkError(key, f"more than {MAX_ITEMS} items: a benchmark runs for every candidate")
    if not items:
        raise BenchmarkError(key, f"split {split!r} has no items", field="dataset_kwargs.data_files")
    return Benchmark(
        name=name.strip(),
        source_key=key,
        kind=kind,
        format="lm-eval-yaml",
        items=tuple(items),
        metrics=metrics,
        data_files=tuple(includes) + tuple(splits[split]),
        sha256=digest.hexdigest(),
    )


def _require(key: str, cfg: Mapping[str, Any], field: str, ok: Any, message: str) -> None:
    if not ok(cfg.get(field)):
        raise BenchmarkError(key, f"{cfg.get(field)!r}: {message}", field=field)


def _string(key: str, cfg: Mapping[str, Any], field: str, default: str) -> str:
    value = cfg.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BenchmarkError(key, f"expected a string, got {value!r}", field=field)
    return value


def _tags(file: str, value: Any, *, field: str, line: int | None = None) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(t, str) and t.strip() for t in values):
        raise BenchmarkError(file, "expected a list of non-empty strings", field=field, line=line)
    return tuple(t.strip() for t in values)


def _check_filters(key: str, filters: Any) -> None:
    """Accept only filters that change nothing here (one generation per prompt; answers are normalised)."""
    if filters is None:
        return
    if not isinstance(filters, list):
        raise BenchmarkError(key, "expected a list of filter pipelines", field="filter_list")
    for pipeline in filters:
        steps = pipeline.get("filter") if isinstance(pipeline, dict) else None
        if not isinstance(steps, list):
            raise BenchmarkError(key, "each pipeline needs a filter list", field="filter_list")
        for step in steps:
            fn = step.get("function") if isinstance(step, dict) else None
            if fn not in _NOOP_FILTERS:
                raise BenchmarkError(
                    key, f"filter {fn!r} is not supported (only {sorted(_NOOP_FILTERS)})", field="filter_list"
                )


def _metric_list(key: str, value: Any, kind: str) -> tuple[str, ...]:
    allowed = tuple(GENERATION_METRICS) if kind == "generate_until" else LOGLIKELIHOOD_METRICS
    if value is None:
        return ("exact_match",) if kind == "generate_until" else LOGLIKELIHOOD_METRICS
    if not isinstance(value, list) or not value:
        raise BenchmarkError(key, "expected a list of {metric: name}", field="metric_list")
    out: list[str] = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise BenchmarkError(key, "each entry needs a metric name", field="metric_list")
        metric = entry["metric"]
        if metric not in allowed:
            message = f"{metric!r} is not supported for {kind}; use one of {list(allowed)}"
            raise BenchmarkError(key, message, field="metric_list")
        extra = sorted(set(entry) - _METRIC_KEYS)
        if extra:
            raise BenchmarkError(key, f"metric option {extra[0]!r} is not supported", field="metric_list")
        aggregation = entry.get("aggregation", "mean")
        if aggregation not in ("mean", metric):
            raise BenchmarkError(key, f"aggregation {aggregation!r}: only mean is supported", field="metric_list")
        for option in ("ignore_case", "ignore_punctuation"):
            if entry.get(option, True) is not True:
                raise BenchmarkError(
                    key, f"{option}: false is not supported: answers are compared normalised", field="metric_list"
                )
        if metric not in out:
            out.append(metric)
    return tuple(out)


def _generation_kwargs(key: str, value: Any, kind: str, fewshot_delimiter: str) -> tuple[tuple[str, ...], int]:
    """``(until, max_tokens)``: lm-eval's defaults are the few-shot delimiter and 256 tokens."""
    if value is None:
        return (fewshot_delimiter,), LM_EVAL_MAX_GEN_TOKS
    field = "generation_kwargs"
    if kind != "generate_until":
        raise BenchmarkError(key, "only generate_until tasks generate", field=field)
    if not isinstance(value, dict):
        raise BenchmarkError(key, "must be a mapping", field=field)
    extra = sorted(set(value) - _GENERATION_KWARGS)
    if extra:
        raise BenchmarkError(key, "not supported: decoding is greedy", field=f"{field}.{extra[0]}")
    if value.get("do_sample", False) is not False:
        raise BenchmarkError(key, "sampling is not supported: decoding is greedy", field=f"{field}.do_sample")
    if value.get("temperature", 0) not in (0, 0.0, None):
        raise BenchmarkError(key, "only 0 is supported: decoding is greedy", field=f"{field}.temperature")
    until = _until(key, value.get("until", [fewshot_delimiter]), field=f"{field}.until")
    max_tokens = value.get("max_gen_toks", LM_EVAL_MAX_GEN_TOKS)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise BenchmarkError(key, f"expected an integer from 1 to {MAX_TOKENS_LIMIT}", field=f"{field}.max_gen_toks")
    return until, max_tokens


def _until(file: str, value: Any, *, field: str, line: int | None = None) -> tuple[str, ...]:
    """Stop strings, kept verbatim (``"\\n"`` is the usual one); a single string is a list of one."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(u, str) and u for u in values):
        raise BenchmarkError(file, "expected a list of non-empty strings", field=field, line=line)
    return tuple(values)


# ------------------------------------------------------------------------------------------- templates


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox (no attribute escapes), and no ``*`` / ``**`` that builds a giant value.

    ``{{ 'x' * 10**10 }}`` would take the job's memory before any length check could see the
    result: the size is checked before the operation runs."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            # An integer power's size is about bit_length * exponent bits; floats overflow by themselves.
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > 4096:
                raise SecurityError(f"{left!r} ** {right!r} is too large for a benchmark template")
            return left**right
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_RENDERED_CHARS:
                raise SecurityError(f"repeating a value {times} times exceeds {MAX_RENDERED_CHARS} characters")
        return left * right


def _regex_replace(value: Any, pattern: Any, repl: Any) -> str:
    """lm-evaluation-harness's ``regex_replace`` filter, with the user's pattern compiled under guard:
    a malformed or oversized pattern is a template error of that benchmark, never an exception
    that escapes it."""
    if not isinstance(pattern, str) or not isinstance(repl, str):
        raise FilterArgumentError("regex_replace takes a pattern and a replacement, both strings")
    if len(pattern) > MAX_REGEX_CHARS:
        raise FilterArgumentError(f"regex_replace pattern is longer than {MAX_REGEX_CHARS} characters")
    try:
        return re.compile(pattern).sub(repl, str(value))
    except re.error as e:  # a bad pattern, or a replacement naming a group the pattern lacks
        raise FilterArgumentError(f"regex_replace({pattern!r}, {repl!r}): {e}") from e


_ENV = _BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
# lm-evaluation-harness registers this filter for its templates; tasks use it.
_ENV.filters["regex_replace"] = _regex_replace


def _compile(key: str, field: str, source: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateError as e:
        raise BenchmarkError(key, f"not a valid Jinja2 template: {e}", field=field) from e


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Template:
    """``doc_to_text`` / ``doc_to_target``: a field name of the document, else a Jinja2 template.

    A value that is a plain name (``answer``) is always a field: a document without it is an error
    rather than the literal word "answer" as the expected answer."""

    def __init__(self, key: str, field: str, source: str) -> None:
        self.field = field
        self.source = source
        self.compiled = _compile(key, field, source)

    def render(self, data_key: str, line: int, doc: Mapping[str, Any]) -> str:
        if self.source not in doc and _FIELD_NAME.fullmatch(self.source):
            raise BenchmarkError(data_key, f"has no field {self.source!r}", field=self.field, line=line)
        if self.source in doc:
            value = doc[self.source]
            if isinstance(value, dict | list):
                raise BenchmarkError(data_key, f"field {self.source!r} is not text", field=self.field, line=line)
            return str(value)
        return self.render_compiled(self.compiled, data_key, line, doc, self.field)

    @staticmethod
    def render_compiled(template: Any, data_key: str, line: int, doc: Mapping[str, Any], field: str) -> str:
        rendered: list[str] = []
        size = 0
        try:
            # Streamed, so that a template looping out text is stopped at the cap, not at the end.
            for chunk in template.generate(**doc):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise BenchmarkError(
                        data_key, f"renders more than {MAX_RENDERED_CHARS} characters", field=field, line=line
                    )
                rendered.append(chunk)
            return "".join(rendered)
        except BenchmarkError:
            raise
        except TemplateError as e:
            raise BenchmarkError(data_key, f"cannot render {field}: {e}", field=field, line=line) from e
        except Exception as e:  # a template that fails ({{ 1/0 }}) is this benchmark's error
            message = f"cannot render {field}: {type(e).__name__}: {e}"
            raise BenchmarkError(data_key, message, field=field, line=line) from e


def _check_length(file: str, line: int, field: str, text: str) -> None:
    if len(text) > MAX_RENDERED_CHARS:
        message = f"{len(text)} characters, more than the {MAX_RENDERED_CHARS} a prompt or an answer may have"
        raise BenchmarkError(file, message, field=field, line=line)


def _template(key: str, cfg: Mapping[str, Any], field: str) -> _Template:
    value = cfg.get(field)
    if not isinstance(value, str) or not value:
        raise BenchmarkError(key, "missing or not a string: a field name or a Jinja2 template", field=field)
    return _Template(key, field, value)


def _data_docs(key: str, body: bytes) -> list[tuple[int, dict[str, Any]]]:
    """The documents of a data file: JSON Lines, or (``.json``) a JSON array of objects."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BenchmarkError(key, f"not UTF-8: {e}") from e
    if key.lower().endswith(".json") and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchmarkError(key, f"not valid JSON: {e}") from e
        if not all(isinstance(r, dict) for r in rows):
            raise BenchmarkError(key, "a JSON data file must be an array of objects")
        return [(i, r) for i, r in enumerate(rows, 1)]
    docs: list[tuple[int, dict[str, Any]]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BenchmarkError(key, f"not a JSON object: {e}", line=n) from e
        if not isinstance(obj, dict):
            raise BenchmarkError(key, "not a JSON object", line=n)
        docs.append((n, obj))
    return docs


# ---------------------------------------------------------------------------------------------- JSONL


def _jsonl_benchmark(key: str, body: bytes) -> Benchmark:
    items: list[BenchmarkItem] = []
    for n, obj in _data_docs(key, body):
        extra = sorted(set(obj) - JSONL_FIELDS)
        if extra:
            raise BenchmarkError(key, f"unknown field; allowed: {sorted(JSONL_FIELDS)}", field=extra[0], line=n)
        for field in ("prompt", "expected"):
            if not isinstance(obj.get(field), str) or not obj[field]:
                raise BenchmarkError(key, "missing: every item needs a string", field=field, line=n)
            _check_length(key, n, field, obj[field])
        metric = obj.get("metric", "exact_match")
        if metric not in GENERATION_METRICS:
            raise BenchmarkError(key, f"{metric!r}: use one of {list(GENERATION_METRICS)}", field="metric", line=n)
        max_tokens = obj.get("max_tokens", DEFAULT_MAX_TOKENS)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise BenchmarkError(key, f"expected an integer from 1 to {MAX_TOKENS_LIMIT}", field="max_tokens", line=n)
        until = _until(key, obj.get("until", list(DEFAULT_JSONL_UNTIL)), field="until", line=n)
        items.append(
            BenchmarkItem(
                prompt=obj["prompt"],
                expected=obj["expected"],
                metrics=(metric,),
                tags=_tags(key, obj.get("tags"), field="tags", line=n),
                max_tokens=max_tokens,
                until=until,
            )
        )
        if len(items) > MAX_ITEMS:
            raise BenchmarkError(key, f"more than {MAX_ITEMS} items: a benchmark runs for every candidate")
    if not items:
        raise BenchmarkError(key, "no items")
    metrics = tuple(dict.fromkeys(m for item in items for m in item.metrics))
    return Benchmark(
        name=key[: -len(".jsonl")],
        source_key=key,
        kind="generate_until",
        format="jsonl",
        items=tuple(items),
        metrics=metrics,
        sha256=hashlib.sha256(body).hexdigest(),
    )


# ---------------------------------------------------------------------------------------------- scoring


def score_generation(item: BenchmarkItem, generated: str) -> dict[str, float]:
    """Each of the item's metrics on the generated text (already cut at ``until``), ``{metric: score}``.

    The whole generation is compared (normalised, :mod:`docllm.evaluation.scoring`): the item's
    ``until`` and ``max_tokens`` say where an answer ends.

    Example
    -------
    >>> score_generation(BenchmarkItem(prompt="Max size:", expected="5 TB", metrics=("exact_match", "token_f1")),
    ...                  " 5 TB.")
    {'exact_match': 1.0, 'token_f1': 1.0}
    """
    return {m: float(GENERATION_METRICS[m](generated, item.expected)) for m in item.metrics if m in GENERATION_METRICS}


def score_loglikelihood(logprob: float, is_greedy: bool) -> dict[str, float]:
    """A ``loglikelihood`` request's scores, as lm-evaluation-harness defines them.

    ``loglikelihood`` is ``log p(target_delimiter + target | prompt)``; ``acc`` is 1.0 when that
    continuation is also the greedy one (every token the argmax), else 0.0.

    Example
    -------
    >>> score_loglikelihood(-1.5, True)
    {'loglikelihood': -1.5, 'acc': 1.0}
    """
    return {"loglikelihood": float(logprob), "acc": 1.0 if is_greedy else 0.0}


def aggregate(benchmark: Benchmark, per_item: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """A benchmark's metrics from its items' scores (``per_item[i]`` scores ``benchmark.items[i]``).

    * ``<metric>``: the mean over items of each score (``exact_match``, ``acc``, ``loglikelihood``, …);
    * ``perplexity`` (loglikelihood tasks that ask for it): ``exp(-mean loglikelihood)``, lm-eval's
      aggregation;
    * ``tag:<tag>:<metric>``: the same means over the items carrying the tag.

    Example
    -------
    >>> b = parse_benchmarks({"f.jsonl": b'{"prompt": "p", "expected": "a", "tags": ["x"]}\\n'
    ...                                   b'{"prompt": "q", "expected": "b"}'})[0][0]
    >>> aggregate(b, [{"exact_match": 1.0}, {"exact_match": 0.0}])
    {'exact_match': 0.5, 'tag:x:exact_match': 1.0}
    """
    if len(per_item) != len(benchmark.items):
        raise ValueError(f"{len(per_item)} scores for {len(benchmark.items)} items of {benchmark.name}")
    out = _means(per_item)
    if benchmark.kind == "loglikelihood" and "perplexity" in benchmark.metrics and "loglikelihood" in out:
        out["perplexity"] = math.exp(-out["loglikelihood"])
    tags = sorted({t for item in benchmark.items for t in item.tags})
    for tag in tags:
        scores = [s for item, s in zip(benchmark.items, per_item, strict=True) if tag in item.tags]
        for metric, value in _means(scores).items():
            out[f"tag:{tag}:{metric}"] = value
    return out


def _means(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for row in rows:
        for metric, value in row.items():
            sums.setdefault(metric, []).append(float(value))
    return {m: math.fsum(v) / len(v) for m, v in sums.items()}

"""An in-process OpenSearch stand-in, plugged in below the real ``opensearch-py`` client.

A test double, kept under ``tests/`` so that it never ships with the product:
``from tests.support.opensearch_emulator import OpenSearchEmulator`` (tests and
benchmarks run from the repository root).

Why this and not ``openmock`` or a recording fake: openmock replaces the
client class (so URL building, serialisation and error mapping of the real
client are never run) and knows no index templates, aliases, analyzers,
refresh or bulk item errors. This emulator is an ``opensearchpy.Connection``:
the real client and transport build every request, the emulator parses the
HTTP method, path, query string and body the way the REST API defines them,
and answers with the same status codes and response shapes. It *checks*
what it receives (unknown endpoints, query types, mapping fields under
``dynamic: strict`` and analyzer references all give 400) and *behaves* like
OpenSearch where the contract tests depend on it: index templates applied at
creation, atomic ``_aliases``, documents visible only after ``_refresh``,
``_bulk`` per-item results, ``http.max_content_length`` (413), BM25 scoring
(Lucene formula, per-field lengths, ``most_fields`` sum of boosted fields),
``term`` filters, ``terms`` aggregations, ``search_after``, ``_count`` and
``_resolve/index``.

Two services. By default it behaves like a managed domain whose indexes have
``refresh_interval: -1``: writes become searchable on ``_refresh`` only. With
``serverless=True`` it behaves like OpenSearch Serverless as AWS documents it:
``_refresh`` does not exist (404), and writes become searchable on their own
``refresh_interval_s`` seconds (of ``clock``) after they were made; a test
moves a fake clock to cross that delay deterministically.

Hybrid search (issue 18): ``PUT _search/pipeline/<id>`` (checked: known processors, ``rrf``
for the score ranker), ``GET <index>/_mapping``, ``knn_vector`` mappings (dimension, method)
and vectors (their length), and a top-level ``hybrid`` query sent with ``?search_pipeline=``
naming a stored pipeline. Each sub-query ranks its matches and keeps ``pagination_depth`` of
them (else ``from + size``), a ``knn`` clause its ``k`` nearest by **exact** inner product over
the documents its ``filter`` lets through (scored as Lucene's ``innerproduct`` space), and the
pipeline's ``score-ranker-processor`` fuses the lists by weighted reciprocal rank. So the
requests are checked and the fusion is the documented formula, but what an HNSW graph would
miss (approximate recall), score ties across shards and the normalization processor are not
emulated. With ``serverless=True`` a pipeline with ``score-ranker-processor`` is refused: AWS
lists only the normalization processor for hybrid search on Serverless.

What it does not do (and the docs say so): its text analysis runs
:func:`docllm.search.analyzer.analyze` for any field whose analyzer is
declared in the index settings instead of interpreting the Lucene filter
chain, so differences between that chain and the Python analyzer are
invisible here (``tests/unit/search/test_search_opensearch_analysis.py``
checks the chain's definition instead); scores are per index, not per shard;
no security, no clusters, no scroll, no point in time, no approximate k-NN;
Serverless's refresh delay is a fixed number here, not the service's.

Examples
--------
>>> from opensearchpy import OpenSearch
>>> emulator = OpenSearchEmulator()
>>> client = OpenSearch(hosts=[{"host": "emulated", "port": 9200}],
...                     connection_class=emulator.connection_class())
>>> client.indices.exists(index="nothing")
False
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any
from urllib.parse import unquote

from opensearchpy import Connection, OpenSearch

from docllm.search.analyzer import analyze

_K1, _B = 1.2, 0.75
_FIELD_TYPES = {"keyword", "text", "integer", "long", "float", "boolean", "date", "knn_vector", "object"}
_BUILTIN_FILTERS = {"lowercase", "stop", "porter_stem", "asciifolding", "trim"}
_FILTER_TYPES = {
    "word_delimiter_graph",
    "word_delimiter",
    "stop",
    "stemmer",
    "keyword_marker",
    "length",
    "lowercase",
    "pattern_replace",
    "synonym_graph",
}
_KNN_ENGINES = {"lucene", "faiss", "nmslib"}
_KNN_SPACES = {"l2", "innerproduct", "cosinesimil", "l1", "linf", "hamming"}
_PHASE_PROCESSORS = {"normalization-processor", "score-ranker-processor"}


class _HttpError(Exception):
    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.body = {"error": {"type": kind, "reason": reason}, "status": status}


@dataclass
class _Index:
    settings: dict[str, Any]
    mappings: dict[str, Any]
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # what searches see
    # written, not yet refreshed: _id -> (source, or None for a delete; when it was written)
    pending: dict[str, tuple[dict[str, Any] | None, float]] = field(default_factory=dict)

    def live_doc(self, _id: str) -> dict[str, Any] | None:
        # GET is realtime in OpenSearch: it sees unrefreshed writes.
        if _id in self.pending:
            return self.pending[_id][0]
        return self.docs.get(_id)

    def write(self, _id: str, doc: dict[str, Any] | None, now: float) -> None:
        self.pending.pop(_id, None)  # a rewrite moves to the end, with its new time
        self.pending[_id] = (doc, now)

    def refresh(self, written_by: float | None = None) -> None:
        """Make pending writes searchable: all of them, or those written at or before ``written_by``."""
        for _id, (doc, at) in list(self.pending.items()):
            if written_by is not None and at > written_by:
                continue
            if doc is None:
                self.docs.pop(_id, None)
            else:
                self.docs[_id] = doc
            del self.pending[_id]


class OpenSearchEmulator:
    """Cluster state plus the REST routes the docllm adapter (and a little more) uses.

    Attributes
    ----------
    requests
        ``(method, path, params, body)`` of every request, for tests to inspect.
    throttle_bulks
        How many of the next ``_bulk`` requests answer HTTP 429 as a whole.
    throttle_items
        How many of the next bulk *items* answer 429 inside a 200 response.
    max_content_length
        Request bodies larger than this get 413, as ``http.max_content_length`` does.
    serverless, refresh_interval_s, clock
        Serverless behaviour (see the module docstring): no ``_refresh``; a write is
        searchable once ``clock()`` is ``refresh_interval_s`` past the time it was made.
    """

    def __init__(
        self,
        max_content_length: int = 100 * 1024 * 1024,
        *,
        serverless: bool = False,
        refresh_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.serverless = serverless
        self.refresh_interval_s = refresh_interval_s
        self.clock = clock
        self.indices: dict[str, _Index] = {}
        self.aliases: dict[str, set[str]] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.search_pipelines: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], Any]] = []
        self.throttle_bulks = 0
        self.throttle_items = 0
        self.max_content_length = max_content_length
        self._lock = threading.RLock()

    def client(self) -> OpenSearch:
        """A real ``opensearchpy.OpenSearch`` client whose requests this emulator answers."""
        return OpenSearch(hosts=[{"host": "emulated", "port": 9200}], connection_class=self.connection_class())

    def connection_class(self) -> type[Connection]:
        """A ``Connection`` subclass bound to this emulator, for ``OpenSearch(connection_class=...)``."""
        emulator = self

        class EmulatedConnection(Connection):
            def perform_request(  # opensearch-py's signature
                self,
                method: str,
                url: str,
                params: Any = None,
                body: Any = None,
                timeout: Any = None,
                ignore: Any = (),
                headers: Any = None,
            ) -> tuple[int, dict[str, str], str]:
                status, payload = emulator.handle(method, url, dict(params or {}), body)
                raw = "" if payload is None else json.dumps(payload)
                if not (200 <= status < 300) and status not in (ignore or ()):
                    self._raise_error(status, raw, "application/json")
                return status, {"content-type": "application/json"}, raw

        return EmulatedConnection

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, method: str, url: str, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        path = unquote(url.split("?", 1)[0])
        raw = body.decode() if isinstance(body, bytes) else body
        if raw is not None and len(raw.encode()) > self.max_content_length:
            return 413, {"error": {"type": "content_too_long"}, "status": 413}
        self.requests.append((method, path, params, raw))
        parts = [p for p in path.split("/") if p]
        try:
            with self._lock:
                return self._route(method, parts, params, raw)
        except _HttpError as e:
            return e.status, e.body

    def _route(self, method: str, parts: list[str], params: dict[str, Any], raw: str | None) -> tuple[int, Any]:
        body = json.loads(raw) if raw and not (parts and parts[-1] == "_bulk") else None
        match (method, parts):
            case ("PUT", ["_index_template", name]):
                return self._put_template(name, body or {})
            case ("POST" | "PUT", ["_bulk"]) | ("POST" | "PUT", [_, "_bulk"]):
                return self._bulk(parts[0] if len(parts) == 2 else None, raw or "")
            case ("POST", ["_aliases"]):
                return self._update_aliases(body or {})
            case ("HEAD", ["_alias", name]):
                return (200 if self.aliases.get(name) else 404), None
            case ("GET", ["_alias", name]):
                return self._get_alias(name)
            case ("PUT", ["_search", "pipeline", name]):
                return self._put_search_pipeline(name, body or {})
            case ("POST" | "GET", [target, "_search"]):
                return 200, self._search(target, body or {}, params)
            case ("GET", [target, "_mapping"]):
                return 200, {n: {"mappings": self.indices[n].mappings} for n in self._resolve(target)}
            case ("POST" | "GET", [target, "_count"]):
                return 200, self._count(target, body or {})
            case ("GET", ["_resolve", "index", name]):
                return 200, self._resolve_index(name)
            case ("POST" | "GET", [target, "_refresh"]):
                if self.serverless:
                    # Not among Serverless's supported operations; clients report a 404.
                    raise _HttpError(404, "unsupported_operation", "_refresh is not supported by OpenSearch Serverless")
                for name in self._resolve(target):
                    self.indices[name].refresh()
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            case ("PUT" | "POST", [target, "_mapping"]):
                return self._put_mapping(target, body or {})
            case ("GET", [target, "_doc", _id]):
                return self._get_doc(target, _id)
            case ("HEAD", [name]):
                return (200 if self._resolve(name, missing_ok=True) else 404), None
            case ("GET", [name]):
                names = self._resolve(name)
                return 200, {
                    n: {
                        "settings": self.indices[n].settings,
                        "mappings": self.indices[n].mappings,
                        "aliases": {a: {} for a, ix in self.aliases.items() if n in ix},
                    }
                    for n in names
                }
            case ("PUT", [name]):
                return self._create_index(name, body or {})
            case ("DELETE", [name]):
                for n in self._resolve(name):
                    del self.indices[n]
                    for members in self.aliases.values():
                        members.discard(n)
                return 200, {"acknowledged": True}
        raise _HttpError(400, "unsupported_endpoint", f"{method} /{'/'.join(parts)} is not emulated")

    # -- indices, templates and aliases --------------------------------------------------------
    def _resolve(self, target: str, *, missing_ok: bool = False) -> list[str]:
        names: list[str] = []
        for piece in target.split(","):
            if piece in self.aliases:
                names.extend(sorted(self.aliases[piece]))
            elif "*" in piece:
                names.extend(n for n in sorted(self.indices) if fnmatch(n, piece))
            elif piece in self.indices:
                names.append(piece)
            elif not missing_ok:
                raise _HttpError(404, "index_not_found_exception", f"no such index [{piece}]")
        return names

    def _put_template(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not body.get("index_patterns"):
            raise _HttpError(400, "action_request_validation_exception", "index_patterns is missing")
        template = body.get("template", {})
        self._check_settings(template.get("settings", {}))
        self._check_mappings(template.get("mappings", {}), template.get("settings", {}))
        self.templates[name] = body
        return 200, {"acknowledged": True}

    def _check_settings(self, settings: dict[str, Any]) -> None:
        analysis = settings.get("analysis", {})
        filters = analysis.get("filter", {})
        for fname, spec in filters.items():
            if spec.get("type") not in _FILTER_TYPES:
                raise _HttpError(400, "illegal_argument_exception", f"unknown filter type for [{fname}]")
        tokenizers = analysis.get("tokenizer", {})
        for aname, spec in analysis.get("analyzer", {}).items():
            if spec.get("tokenizer") not in tokenizers and spec.get("tokenizer") not in {
                "standard",
                "whitespace",
            }:
                raise _HttpError(400, "illegal_argument_exception", f"analyzer [{aname}]: unknown tokenizer")
            for f in spec.get("filter", []):
                if f not in filters and f not in _BUILTIN_FILTERS:
                    raise _HttpError(400, "illegal_argument_exception", f"analyzer [{aname}]: unknown filter [{f}]")
            for f in spec.get("char_filter", []):
                if f not in analysis.get("char_filter", {}):
                    raise _HttpError(
                        400, "illegal_argument_exception", f"analyzer [{aname}]: unknown char_filter [{f}]"
                    )

    def _check_mappings(self, mappings: dict[str, Any], settings: dict[str, Any]) -> None:
        analyzers = set(settings.get("analysis", {}).get("analyzer", {})) | {
            "standard",
            "english",
            "whitespace",
        }
        for fname, spec in mappings.get("properties", {}).items():
            if spec.get("type") not in _FIELD_TYPES:
                raise _HttpError(400, "mapper_parsing_exception", f"field [{fname}]: unknown type")
            if spec["type"] == "knn_vector":
                self._check_knn_field(fname, spec)
            if spec.get("analyzer") and spec["analyzer"] not in analyzers:
                raise _HttpError(400, "mapper_parsing_exception", f"analyzer [{spec['analyzer']}] not found")

    @staticmethod
    def _check_knn_field(fname: str, spec: dict[str, Any]) -> None:
        dim = spec.get("dimension")
        if not isinstance(dim, int) or not 1 <= dim <= 16000:
            raise _HttpError(400, "mapper_parsing_exception", f"knn_vector [{fname}]: dimension must be 1..16000")
        method = spec.get("method", {})
        if method and (
            method.get("name") != "hnsw"
            or method.get("engine", "lucene") not in _KNN_ENGINES
            or method.get("space_type", "l2") not in _KNN_SPACES
        ):
            raise _HttpError(400, "mapper_parsing_exception", f"knn_vector [{fname}]: unsupported method {method}")

    def _put_search_pipeline(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        unknown = set(body) - {"description", "request_processors", "response_processors", "phase_results_processors"}
        if unknown:
            raise _HttpError(400, "parse_exception", f"unknown pipeline keys {sorted(unknown)}")
        for processor in body.get("phase_results_processors", []):
            ((kind, spec),) = processor.items()
            if kind not in _PHASE_PROCESSORS:
                raise _HttpError(400, "parse_exception", f"Invalid processor type {kind}")
            if kind == "score-ranker-processor":
                if self.serverless:
                    # AWS, "Configure Neural Search and Hybrid Search on OpenSearch Serverless":
                    # hybrid search there lists the normalization processor only.
                    raise _HttpError(400, "illegal_argument_exception", f"{kind} is not supported on Serverless")
                combination = spec.get("combination", {})
                constant = combination.get("rank_constant", 60)
                if combination.get("technique", "rrf") != "rrf" or not 1 <= constant <= 10000:
                    raise _HttpError(400, "illegal_argument_exception", f"{kind}: invalid combination {combination}")
                weights = combination.get("parameters", {}).get("weights", [])
                if any(not 0.0 <= w <= 1.0 for w in weights):
                    raise _HttpError(400, "illegal_argument_exception", f"{kind}: weights must be in [0.0, 1.0]")
        self.search_pipelines[name] = body
        return 200, {"acknowledged": True}

    def _create_index(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if name in self.indices or name in self.aliases:
            raise _HttpError(400, "resource_already_exists_exception", f"index [{name}] already exists")
        settings: dict[str, Any] = {}
        mappings: dict[str, Any] = {}
        for template in self.templates.values():
            if any(fnmatch(name, p) for p in template["index_patterns"]):
                settings = dict(template.get("template", {}).get("settings", {}))
                mappings = dict(template.get("template", {}).get("mappings", {}))
        settings.update(body.get("settings", {}))
        mappings = body.get("mappings", mappings)
        self._check_settings(settings)
        self._check_mappings(mappings, settings)
        self.indices[name] = _Index(settings=settings, mappings=mappings)
        for alias in body.get("aliases", {}):
            self.aliases.setdefault(alias, set()).add(name)
        return 200, {"acknowledged": True, "index": name}

    def _update_aliases(self, body: dict[str, Any]) -> tuple[int, Any]:
        # Validate every action first: the call is all-or-nothing, like OpenSearch's.
        staged = {a: set(m) for a, m in self.aliases.items()}
        for action in body.get("actions", []):
            ((verb, spec),) = action.items()
            if spec["index"] not in self.indices:
                raise _HttpError(404, "index_not_found_exception", f"no such index [{spec['index']}]")
            members = staged.setdefault(spec["alias"], set())
            if verb == "add":
                members.add(spec["index"])
            elif verb == "remove":
                if spec["index"] not in members:
                    raise _HttpError(404, "aliases_not_found_exception", f"alias [{spec['alias']}] missing")
                members.discard(spec["index"])
            else:
                raise _HttpError(400, "illegal_argument_exception", f"unknown alias action [{verb}]")
        self.aliases = staged
        return 200, {"acknowledged": True}

    def _get_alias(self, name: str) -> tuple[int, Any]:
        members = self.aliases.get(name)
        if not members:
            raise _HttpError(404, "aliases_not_found_exception", f"alias [{name}] missing")
        return 200, {n: {"aliases": {name: {}}} for n in sorted(members)}

    def _resolve_index(self, name: str) -> dict[str, Any]:
        indices = [n for n in sorted(self.indices) if fnmatch(n, name)]
        aliases = [a for a in sorted(self.aliases) if self.aliases[a] and fnmatch(a, name)]
        return {
            "indices": [
                {
                    "name": n,
                    "aliases": sorted(a for a, members in self.aliases.items() if n in members),
                    "attributes": ["open"],
                }
                for n in indices
            ],
            "aliases": [{"name": a, "indices": sorted(self.aliases[a])} for a in aliases],
            "data_streams": [],
        }

    def _put_mapping(self, target: str, body: dict[str, Any]) -> tuple[int, Any]:
        unknown = set(body) - {"properties", "dynamic"}
        if unknown:
            raise _HttpError(400, "mapper_parsing_exception", f"unknown mapping keys {sorted(unknown)}")
        for name in self._resolve(target):
            index = self.indices[name]
            merged = dict(index.mappings)
            props = dict(merged.get("properties", {}))
            for fname, spec in body.get("properties", {}).items():
                if fname in props and props[fname] != spec:
                    # Only new fields can be added; changing one needs a reindex.
                    raise _HttpError(400, "illegal_argument_exception", f"mapper [{fname}] cannot be changed")
                props[fname] = spec
            merged["properties"] = props
            if "dynamic" in body:
                merged["dynamic"] = body["dynamic"]
            self._check_mappings(merged, index.settings)
            index.mappings = merged
        return 200, {"acknowledged": True}

    def _write_index(self, target: str) -> _Index:
        names = self._resolve(target)
        if len(names) != 1:
            raise _HttpError(400, "illegal_argument_exception", f"[{target}] has no single write index")
        return self.indices[names[0]]

    # -- documents ---------------------------------------------------------------------------
    def _check_source(self, index: _Index, source: dict[str, Any]) -> None:
        props = index.mappings.get("properties", {})
        if index.mappings.get("dynamic") == "strict":
            extra = set(source) - set(props)
            if extra:
                raise _HttpError(400, "strict_dynamic_mapping_exception", f"fields {sorted(extra)} not allowed")
        for fname, value in source.items():
            spec = props.get(fname, {})
            if spec.get("type") == "knn_vector" and value is not None:
                if not isinstance(value, list) or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in value
                ):
                    raise _HttpError(400, "mapper_parsing_exception", f"[{fname}]: a vector is a list of numbers")
                if len(value) != spec["dimension"]:
                    raise _HttpError(
                        400,
                        "mapper_parsing_exception",
                        f"[{fname}]: vector length {len(value)} does not match dimension {spec['dimension']}",
                    )

    def _bulk(self, default_index: str | None, raw: str) -> tuple[int, Any]:
        if self.throttle_bulks > 0:
            self.throttle_bulks -= 1
            raise _HttpError(429, "es_rejected_execution_exception", "bulk queue full")
        lines = raw.splitlines()
        if raw and not raw.endswith("\n"):
            raise _HttpError(400, "illegal_argument_exception", "bulk body must end with a newline")
        items: list[dict[str, Any]] = []
        errors = False
        i = 0
        while i < len(lines):
            action = json.loads(lines[i])
            ((verb, meta),) = action.items()
            i += 1
            source = None
            if verb in ("index", "create"):
                source = json.loads(lines[i])
                i += 1
            elif verb != "delete":
                raise _HttpError(400, "illegal_argument_exception", f"unsupported bulk action [{verb}]")
            target = meta.get("_index", default_index)
            result: dict[str, Any] = {"_index": target, "_id": meta.get("_id")}
            if self.throttle_items > 0:
                self.throttle_items -= 1
                result.update(status=429, error={"type": "es_rejected_execution_exception"})
                errors = True
            else:
                try:
                    index = self._write_index(target)
                    if source is not None:
                        self._check_source(index, source)
                        index.write(meta["_id"], source, self.clock())
                        result.update(status=201, result="created")
                    elif index.live_doc(meta["_id"]) is None:
                        result.update(status=404, result="not_found")
                    else:
                        index.write(meta["_id"], None, self.clock())
                        result.update(status=200, result="deleted")
                except _HttpError as e:
                    result.update(status=e.status, error=e.body["error"])
                    errors = True
            items.append({verb: result})
        return 200, {"took": 1, "errors": errors, "items": items}

    def _get_doc(self, target: str, _id: str) -> tuple[int, Any]:
        index = self._write_index(target)
        doc = index.live_doc(_id)
        if doc is None:
            return 404, {"_id": _id, "found": False}
        return 200, {"_id": _id, "found": True, "_source": doc}

    # -- search ------------------------------------------------------------------------------
    def _searchable(self, name: str) -> _Index:
        """The index as a search sees it; on Serverless, after the writes old enough to be refreshed."""
        index = self.indices[name]
        if self.serverless:
            index.refresh(written_by=self.clock() - self.refresh_interval_s)
        return index

    def _count(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"query"}
        if unknown:
            raise _HttpError(400, "parsing_exception", f"unknown count keys {sorted(unknown)}")
        count = 0
        for name in self._resolve(target):
            index = self._searchable(name)
            scorer = _Bm25(index)
            for _id, doc in index.docs.items():
                count += self._eval(body.get("query", {"match_all": {}}), _id, doc, scorer)[0]
        return {"count": count, "_shards": {"total": 1, "successful": 1, "failed": 0}}

    def _search(self, target: str, body: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        unknown = set(body) - {"size", "query", "sort", "_source", "aggs", "search_after", "from"}
        if unknown:
            raise _HttpError(400, "parsing_exception", f"unknown search keys {sorted(unknown)}")
        pipeline = self._search_pipeline((params or {}).get("search_pipeline"))
        query = body.get("query", {"match_all": {}})
        hits: list[tuple[float, str, dict[str, Any]]] = []
        if "hybrid" in query:
            hits = self._hybrid(target, query["hybrid"], body, pipeline)
        else:
            for name in self._resolve(target):
                index = self._searchable(name)
                scorer = _Bm25(index)
                for _id, doc in index.docs.items():
                    matched, score = self._eval(query, _id, doc, scorer)
                    if matched:
                        hits.append((score, _id, doc))
        hits = self._sort(hits, body.get("sort"))
        sort_keys = [self._sort_values(h, body.get("sort")) for h in hits]
        if "search_after" in body:
            after = body["search_after"]
            pairs = [(h, s) for h, s in zip(hits, sort_keys, strict=True) if s > after]
            hits, sort_keys = [p[0] for p in pairs], [p[1] for p in pairs]
        result: dict[str, Any] = {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": []}}
        size = body.get("size", 10)
        for (score, _id, doc), sort_key in list(zip(hits, sort_keys, strict=True))[:size]:
            hit: dict[str, Any] = {"_id": _id, "_score": score, "sort": sort_key}
            includes = body.get("_source", True)
            if includes is not False:
                hit["_source"] = {k: v for k, v in doc.items() if includes is True or k in includes}
            result["hits"]["hits"].append(hit)
        if "aggs" in body:
            result["aggregations"] = self._aggs(body["aggs"], [h[2] for h in hits])
        return result

    def _search_pipeline(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        if name not in self.search_pipelines:
            # OpenSearch's SearchPipelineService: IllegalArgumentException, a 400.
            raise _HttpError(400, "illegal_argument_exception", f"Pipeline {name} is not defined")
        return self.search_pipelines[name]

    def _hybrid(
        self, target: str, spec: dict[str, Any], body: dict[str, Any], pipeline: dict[str, Any] | None
    ) -> list[tuple[float, str, dict[str, Any]]]:
        """Rank each sub-query, keep its ``pagination_depth`` best, fuse them as the pipeline says."""
        unknown = set(spec) - {"queries", "pagination_depth", "filter"}
        if unknown or not 1 <= len(spec.get("queries", [])) <= 5:
            raise _HttpError(400, "parsing_exception", "hybrid: 1 to 5 queries, and pagination_depth, filter only")
        processors = [next(iter(p.items())) for p in (pipeline or {}).get("phase_results_processors", [])]
        if not processors:
            raise _HttpError(400, "illegal_argument_exception", "a hybrid query needs a search pipeline that fuses it")
        kind, proc = processors[0]
        if kind != "score-ranker-processor":
            raise _HttpError(400, "unsupported_operation", f"{kind} is not emulated (only the rrf score ranker)")
        depth = int(spec.get("pagination_depth", body.get("from", 0) + body.get("size", 10)))
        lists: list[list[tuple[float, str, dict[str, Any]]]] = []
        for sub in spec["queries"]:
            ranked: list[tuple[float, str, dict[str, Any]]] = []
            for name in self._resolve(target):
                index = self._searchable(name)
                scorer = _Bm25(index)
                for _id, doc in index.docs.items():
                    if "filter" in spec and not self._eval(spec["filter"], _id, doc, scorer)[0]:
                        continue
                    if "knn" in sub:
                        matched, score = self._knn(sub["knn"], index, _id, doc, scorer)
                    else:
                        matched, score = self._eval(sub, _id, doc, scorer)
                    if matched:
                        ranked.append((score, _id, doc))
            ranked.sort(key=lambda h: (-h[0], h[1]))
            keep = min(depth, int(next(iter(sub["knn"].values()))["k"])) if "knn" in sub else depth
            lists.append(ranked[:keep])
        combination = proc.get("combination", {})
        rank_constant = combination.get("rank_constant", 60)
        weights = combination.get("parameters", {}).get("weights") or [1.0] * len(lists)
        if len(weights) != len(lists):
            raise _HttpError(400, "illegal_argument_exception", "the number of weights must match the sub-queries")
        fused: dict[str, float] = {}
        docs: dict[str, dict[str, Any]] = {}
        for weight, ranked in zip(weights, lists, strict=True):
            for rank, (_, _id, doc) in enumerate(ranked, start=1):
                fused[_id] = fused.get(_id, 0.0) + weight / (rank_constant + rank)
                docs[_id] = doc
        return sorted(((score, _id, docs[_id]) for _id, score in fused.items()), key=lambda h: (-h[0], h[1]))

    def _knn(
        self, spec: dict[str, Any], index: _Index, _id: str, doc: dict[str, Any], scorer: _Bm25
    ) -> tuple[bool, float]:
        """Exact nearest-neighbour scoring of one document (Lucene's ``innerproduct`` score)."""
        ((fname, clause),) = spec.items()
        mapping = index.mappings.get("properties", {}).get(fname, {})
        if mapping.get("type") != "knn_vector":
            raise _HttpError(400, "query_shard_exception", f"field [{fname}] is not a knn_vector")
        unknown = set(clause) - {"vector", "k", "filter"}
        if unknown or not isinstance(clause.get("k"), int) or clause["k"] < 1:
            raise _HttpError(400, "parsing_exception", f"knn [{fname}]: vector, k >= 1 and filter only")
        vector = clause["vector"]
        if len(vector) != mapping["dimension"]:
            raise _HttpError(
                400,
                "illegal_argument_exception",
                f"query vector has invalid dimension: {len(vector)}. Dimension should be: {mapping['dimension']}",
            )
        stored = doc.get(fname)
        if stored is None or ("filter" in clause and not self._eval(clause["filter"], _id, doc, scorer)[0]):
            return False, 0.0
        space = mapping.get("method", {}).get("space_type", "l2")
        if space != "innerproduct":
            raise _HttpError(400, "unsupported_operation", f"space_type [{space}] is not emulated")
        dot = sum(a * b for a, b in zip(vector, stored, strict=True))
        return True, (dot + 1.0) if dot >= 0 else 1.0 / (1.0 - dot)

    @staticmethod
    def _sort(hits: list[tuple[float, str, dict[str, Any]]], sort: Any) -> list[tuple[float, str, dict[str, Any]]]:
        if not sort:
            return sorted(hits, key=lambda h: (-h[0], h[1]))
        for spec in reversed(sort):
            ((name, order),) = spec.items() if isinstance(spec, dict) else [(spec, "desc")]
            reverse = order == "desc"
            if name == "_score":
                hits = sorted(hits, key=lambda h: h[0], reverse=reverse)
            else:
                hits = sorted(hits, key=lambda h, n=name: str(h[2].get(n, "")), reverse=reverse)
        return hits

    @staticmethod
    def _sort_values(hit: tuple[float, str, dict[str, Any]], sort: Any) -> list[Any]:
        if not sort:
            return [hit[0]]
        out: list[Any] = []
        for spec in sort:
            name = next(iter(spec)) if isinstance(spec, dict) else spec
            out.append(hit[0] if name == "_score" else hit[2].get(name))
        return out

    def _eval(self, query: dict[str, Any], _id: str, doc: dict[str, Any], scorer: _Bm25) -> tuple[bool, float]:
        ((kind, spec),) = query.items()
        if kind == "match_all":
            return True, 1.0
        if kind == "term":
            ((fname, value),) = spec.items()
            value = value["value"] if isinstance(value, dict) else value
            return doc.get(fname) == value, 0.0
        if kind == "multi_match":
            if spec.get("type", "best_fields") != "most_fields" or spec.get("operator", "or") != "or":
                raise _HttpError(400, "parsing_exception", "only most_fields/or multi_match is emulated")
            total = 0.0
            for f in spec["fields"]:
                fname, _, boost = f.partition("^")
                total += float(boost or 1.0) * scorer.score(fname, spec["query"], _id, doc)
            return total > 0.0, total
        if kind == "bool":
            unknown = set(spec) - {"must", "filter", "should", "must_not"}
            if unknown:
                raise _HttpError(400, "parsing_exception", f"unknown bool clauses {sorted(unknown)}")
            score = 0.0
            for clause in spec.get("must", []):
                ok, s = self._eval(clause, _id, doc, scorer)
                if not ok:
                    return False, 0.0
                score += s
            for clause in spec.get("filter", []):
                if not self._eval(clause, _id, doc, scorer)[0]:
                    return False, 0.0
            for clause in spec.get("must_not", []):
                if self._eval(clause, _id, doc, scorer)[0]:
                    return False, 0.0
            return True, score
        if kind == "hybrid":
            raise _HttpError(400, "illegal_argument_exception", "a hybrid query must be the top-level query")
        raise _HttpError(400, "parsing_exception", f"query type [{kind}] is not emulated")

    @staticmethod
    def _aggs(aggs: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in aggs.items():
            ((kind, params),) = spec.items()
            if kind != "terms":
                raise _HttpError(400, "parsing_exception", f"aggregation [{kind}] is not emulated")
            counts = Counter(d[params["field"]] for d in docs if params["field"] in d)
            buckets = [{"key": k, "doc_count": c} for k, c in counts.most_common(params.get("size", 10))]
            out[name] = {"buckets": buckets}
        return out


class _Bm25:
    """Lucene BM25 per field over the refreshed documents of one index."""

    def __init__(self, index: _Index) -> None:
        self._index = index
        self._terms: dict[tuple[str, str], Counter[str]] = {}
        self._stats: dict[str, tuple[int, float, Counter[str]]] = {}

    def _analyzed(self, fname: str, _id: str, text: str) -> Counter[str]:
        key = (fname, _id)
        if key not in self._terms:
            self._terms[key] = Counter(self._analyze(fname, text))
        return self._terms[key]

    def _analyze(self, fname: str, text: str) -> list[str]:
        spec = self._index.mappings.get("properties", {}).get(fname, {})
        if spec.get("type") != "text":
            return []
        if spec.get("analyzer") in self._index.settings.get("analysis", {}).get("analyzer", {}):
            return analyze(text)
        return re.findall(r"\w+", text.lower())

    def _field_stats(self, fname: str) -> tuple[int, float, Counter[str]]:
        if fname not in self._stats:
            df: Counter[str] = Counter()
            lengths = []
            for _id, doc in self._index.docs.items():
                if isinstance(doc.get(fname), str):
                    terms = self._analyzed(fname, _id, doc[fname])
                    df.update(terms.keys())
                    lengths.append(sum(terms.values()))
            n = len(lengths)
            self._stats[fname] = (n, (sum(lengths) / n) if n else 0.0, df)
        return self._stats[fname]

    def score(self, fname: str, query: str, _id: str, doc: dict[str, Any]) -> float:
        text = doc.get(fname)
        if not isinstance(text, str):
            return 0.0
        n, avgdl, df = self._field_stats(fname)
        tf = self._analyzed(fname, _id, text)
        dl = sum(tf.values())
        total = 0.0
        for term in dict.fromkeys(self._analyze(fname, query)):
            if tf[term]:
                idf = math.log(1.0 + (n - df[term] + 0.5) / (df[term] + 0.5))
                total += idf * tf[term] * (_K1 + 1) / (tf[term] + _K1 * (1 - _B + _B * dl / max(avgdl, 1e-9)))
        return total

"""The dashboard's building blocks: escaping, the session cookie at the local front, paged state reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.adapters.local.state import SqliteStateStore
from docllm.dashboard.auth import csrf_token, session_token, session_valid
from docllm.dashboard.html import Html, bar_chart, esc, h, table
from docllm.ports.state import StateStore
from docllm.runtime.http import Invocation, Reply, Request, triage
from docllm.runtime.template import FunctionSpec, HttpRoute

KEY = "k" * 43


def test_text_is_escaped_in_content_and_attributes() -> None:
    page = h("a", "<script>x</script>", href='"><img src=x>')
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="&quot;&gt;&lt;img src=x&gt;"' in page


def test_markup_plus_text_escapes_the_text() -> None:
    joined = h("b", "ok") + "<i>"
    assert isinstance(joined, Html)
    assert joined == "<b>ok</b>&lt;i&gt;"
    assert esc(h("b", "ok")) == "<b>ok</b>"  # markup is not escaped twice


def test_an_empty_table_says_so_and_a_chart_has_a_text_alternative() -> None:
    assert "nothing here" in table(["a", "b"], [], caption="c", empty="nothing here")
    chart = bar_chart("docs", [("processed", 9.0), ("<q>", 1.0)])
    assert 'role="img"' in chart and "processed: 9" in chart and "&lt;q&gt;" in chart


def test_session_and_csrf_tokens_derive_from_the_key_without_revealing_it() -> None:
    assert session_token(KEY) != csrf_token(KEY)
    assert KEY not in session_token(KEY)
    assert session_valid({"cookie": f"a=b; docllm_session={session_token(KEY)}"}, KEY)
    assert not session_valid({"cookie": f"docllm_session={session_token('other')}"}, KEY)
    assert not session_valid({"cookie": "docllm_session"}, KEY)


FN = FunctionSpec(
    "ApiFunction",
    "services/api",
    "app.handler",
    30,
    {},
    http_routes=(
        HttpRoute("GET", "/dashboard"),
        HttpRoute("GET", "/dashboard/{proxy+}"),
        HttpRoute("POST", "/dashboard/{proxy+}"),
        HttpRoute("GET", "/v1/status"),
    ),
)


def _request(method: str, path: str, cookie: str | None = None) -> Request:
    headers = {"host": "127.0.0.1:1"} | ({"cookie": f"docllm_session={cookie}"} if cookie else {})
    return Request(method, path, headers, b"", "127.0.0.1")


def test_the_local_front_accepts_the_session_cookie_on_dashboard_paths_only() -> None:
    good = session_token(KEY)
    assert isinstance(triage(FN, KEY, _request("GET", "/dashboard/models", good)), Invocation)
    assert isinstance(triage(FN, KEY, _request("POST", "/dashboard/review", good)), Invocation)
    refused = triage(FN, KEY, _request("GET", "/v1/status", good))
    assert isinstance(refused, Reply) and refused.status == 401


def test_without_a_session_pages_redirect_to_sign_in_and_forms_are_refused() -> None:
    page = triage(FN, KEY, _request("GET", "/dashboard/models", "forged"))
    assert isinstance(page, Reply) and page.status == 303 and ("Location", "/dashboard/login") in page.headers
    posted = triage(FN, KEY, _request("POST", "/dashboard/review"))
    assert isinstance(posted, Reply) and posted.status == 401
    for public in ("/dashboard/login", "/dashboard/static/dashboard.css"):
        assert isinstance(triage(FN, KEY, _request("GET", public)), Invocation), public
    assert isinstance(triage(FN, KEY, _request("POST", "/dashboard/login")), Invocation)


class PlainStore(StateStore):
    """Only the port's abstract methods, over a SQLite store: the port's default ``query_page``."""

    def __init__(self, inner: SqliteStateStore) -> None:
        self.inner = inner

    def get(self, pk, sk):  # type: ignore[no-untyped-def]
        return self.inner.get(pk, sk)

    def put(self, pk, sk, item, *, if_absent=False):  # type: ignore[no-untyped-def]
        self.inner.put(pk, sk, item, if_absent=if_absent)

    def delete(self, pk, sk):  # type: ignore[no-untyped-def]
        self.inner.delete(pk, sk)

    def transact(self, writes):  # type: ignore[no-untyped-def]
        self.inner.transact(writes)

    def query(self, pk, sk_prefix=""):  # type: ignore[no-untyped-def]
        return self.inner.query(pk, sk_prefix)


@pytest.fixture()
def stores(tmp_path: Path) -> tuple[StateStore, StateStore]:
    sqlite = SqliteStateStore(tmp_path / "state.db")
    for i in range(30):
        sqlite.put(
            "docs",
            f"s{i % 3}/d{i:02d}",
            {"status": "quarantined" if i % 4 == 0 else "processed", "service": f"s{i % 3}"},
        )
    sqlite.put("other", "x", {"status": "processed"})
    return sqlite, PlainStore(sqlite)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 5},
        {"limit": 5, "after": "s0/d09"},
        {"limit": 4, "descending": True},
        {"limit": 4, "descending": True, "after": "s1/d10"},
        {"limit": 50, "where": {"status": "quarantined"}},
        {"limit": 3, "where": {"status": "processed"}, "after": "s1/d04"},
    ],
)
def test_a_page_from_sqlite_is_the_page_the_port_defines(stores: tuple[StateStore, StateStore], kwargs: dict) -> None:
    sqlite, plain = stores
    assert sqlite.query_page("docs", **kwargs) == plain.query_page("docs", **kwargs)
    assert sqlite.query_page("docs", "s2/", **kwargs) == plain.query_page("docs", "s2/", **kwargs)


def test_counts_come_from_the_store_and_match_a_full_read(stores: tuple[StateStore, StateStore]) -> None:
    sqlite, plain = stores
    counts = sqlite.count_by("docs", ("status", "service"))
    assert counts == plain.count_by("docs", ("status", "service"))
    assert sum(counts.values()) == 30 and counts[("quarantined", "s0")] == 3

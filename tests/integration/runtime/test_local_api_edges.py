"""The edges of the local API, probed as a careless or hostile client would (issue 13), over raw
sockets and ``http.client`` against a started runtime:

* an unknown path — ``/v1/status/`` with its trailing slash too — is one 404 shape;
* a known path with the wrong method is a 405 that says (``Allow``) which method it takes;
* every query that fails validation is a 400 (never 422), with a message naming the field;
* a Host header other than the address served is refused with a 400 before anything runs:
  a web page whose DNS name was rebound to 127.0.0.1 cannot read the API through the browser.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

NOT_FOUND = {"message": "Not Found"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path_factory.mktemp("edges"), template=REPO / "template.yaml", port=0, auth=True)
    rt.start()
    yield rt
    rt.stop()


def request(
    runtime: LocalRuntime, method: str, target: str, *, host: str | None = None, auth: bool = True
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        if auth:
            conn.putheader("Authorization", f"Bearer {runtime.api_key()}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def raw(runtime: LocalRuntime, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", runtime.port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/status/", "/v1/search/", "/v1//status", "/v1/status/x", "/"])
@pytest.mark.parametrize("auth", [True, False], ids=["key", "no-key"])
def test_every_unknown_path_answers_the_same_404(runtime: LocalRuntime, path: str, auth: bool) -> None:
    status, headers, body = request(runtime, "GET", path, auth=auth)
    assert (status, json.loads(body)) == (404, NOT_FOUND)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/status"), ("DELETE", "/v1/search"), ("PUT", "/v1/documents")]
)
def test_a_known_path_with_the_wrong_method_is_a_405_with_allow(runtime: LocalRuntime, method: str, path: str) -> None:
    status, headers, body = request(runtime, method, path)
    assert status == 405, body
    assert headers["allow"] == "GET"
    assert json.loads(body) == {"message": "Method Not Allowed"}


def test_head_on_a_get_route_is_a_405_without_a_body_and_the_connection_survives(runtime: LocalRuntime) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=30)
    try:
        conn.request("HEAD", "/v1/status")
        response = conn.getresponse()
        assert (response.status, response.getheader("Allow"), response.read()) == (405, "GET", b"")
        conn.request("GET", "/v1/status", headers={"Authorization": f"Bearer {runtime.api_key()}"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=bucket&k=0", "k"),
        ("q=bucket&k=101", "k"),
        ("q=bucket&k=ten", "k"),
        ("k=3", "q"),
        ("q=", "q"),
        ("q=line%0Abreak", "q"),
        ("q=" + "x" * 513, "q"),
        ("q=bucket&service=" + "s" * 129, "service"),
    ],
)
def test_every_query_that_fails_validation_is_a_400_naming_the_field(
    runtime: LocalRuntime, query: str, field: str
) -> None:
    status, _, body = request(runtime, "GET", f"/v1/search?{query}")
    assert status == 400, body
    answer = json.loads(body)
    assert field in answer["message"] and any(field in e["field"] for e in answer["errors"])


def test_documents_limit_out_of_range_is_a_400_too(runtime: LocalRuntime) -> None:
    status, _, body = request(runtime, "GET", "/v1/documents?limit=0")
    assert status == 400 and "limit" in json.loads(body)["message"]


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1", "127.0.0.1:1", "localhost", "127.0.0.2:{port}",
     "localhost.evil.example:{port}", "127.0.0.1:{port}@evil.example", "", "0.0.0.0:{port}"],
)  # fmt: skip
def test_a_host_header_that_is_not_the_served_address_is_refused(runtime: LocalRuntime, host: str) -> None:
    status, _, body = request(runtime, "GET", "/v1/status", host=host.format(port=runtime.port))
    assert status == 400, body
    assert "Host" in json.loads(body)["message"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_served_address_by_any_loopback_name_is_accepted(runtime: LocalRuntime, host: str) -> None:
    status, _, body = request(runtime, "GET", "/v1/status", host=host.format(port=runtime.port))
    assert status == 200, body


def test_a_refused_host_runs_nothing_and_closes_the_connection(runtime: LocalRuntime) -> None:
    key = runtime.api_key()
    answer = raw(
        runtime,
        b"GET /v1/status HTTP/1.1\r\nHost: rebound.example:%d\r\nAuthorization: Bearer %s\r\n\r\n"
        b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (runtime.port, key.encode(), runtime.port),
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # the pipelined second request was not read
    assert b'"version"' not in answer


def test_http_1_0_without_a_host_is_refused(runtime: LocalRuntime) -> None:
    answer = raw(runtime, b"GET /v1/status HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n" % runtime.api_key().encode())
    assert answer.startswith(b"HTTP/1.1 400 ")

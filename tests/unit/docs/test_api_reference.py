"""``docs/api.md`` is generated from the API's OpenAPI document and kept current (docs/gen_api.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from tests.unit.docs.helpers import DOCS, REPO, anchors, links, load_generator

gen_api = load_generator("gen_api")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(gen_api.openapi_document())


def test_the_committed_reference_is_what_the_routes_generate(document: dict[str, Any]) -> None:
    committed = (DOCS / "api.md").read_text(encoding="utf-8")
    assert committed == gen_api.render(document), "docs/api.md is stale: run .venv/bin/python docs/gen_api.py"


def test_every_api_route_the_template_serves_has_a_section(document: dict[str, Any]) -> None:
    tpl, _ = decode(str(REPO / "template.yaml"))
    assert tpl is not None
    events = tpl["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    # The dashboard's HTML pages are documented with the dashboard (docs/dashboard.md), not here.
    served = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in events
        if e["Type"] == "HttpApi" and not e["Properties"]["Path"].startswith("/dashboard")
    }
    assert served
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for method, path in served:
        assert f"### `{method} {path}`" in text, (method, path)


def test_every_link_inside_the_reference_lands_on_a_heading() -> None:
    page = DOCS / "api.md"
    own = anchors(page)
    for target in links(page):
        if target.startswith("#"):
            assert target[1:] in own, target


def test_parameters_show_type_bounds_default_and_description() -> None:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/v1/x": {
                "get": {
                    "summary": "GET /v1/x",
                    "parameters": [
                        {
                            "name": "k",
                            "in": "query",
                            "required": False,
                            "description": "hits | at most",
                            "schema": {"type": "integer", "minimum": 1.0, "maximum": 100.0, "default": 10},
                        }
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    text = gen_api.render(doc)
    assert "| `k` | query | integer | no | `10` | 1 ≤ x ≤ 100 | hits \\| at most |" in text
    # Powertools' placeholder summary ("GET /v1/x") is not repeated as prose.
    assert "\nGET /v1/x\n" not in text


def test_schema_types_name_references_alternatives_and_arrays() -> None:
    assert gen_api.type_of({"$ref": "#/components/schemas/Answer"}) == "[Answer](#answer)"
    assert gen_api.type_of({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string or null"
    assert gen_api.type_of({"type": "array", "items": {"$ref": "#/c/Citation"}}) == "array of [Citation](#citation)"
    assert gen_api.type_of({"enum": ["a", "b"]}) == "one of `a`, `b`"
    assert gen_api.constraints({"anyOf": [{"type": "string", "maxLength": 128}, {"type": "null"}]}) == (
        "0..128 characters"
    )


def test_a_required_field_without_a_property_entry_is_still_listed() -> None:
    rows = gen_api.render_schema("E", {"properties": {"a": {"type": "string"}}, "required": ["a", "msg"]})
    assert any(r.startswith("| `msg` | any | yes |") for r in rows)


def test_check_mode_fails_on_a_stale_file_and_passes_once_written(tmp_path: Path) -> None:
    out = tmp_path / "api.md"
    out.write_text("stale\n", encoding="utf-8")
    assert gen_api.main(["--check", "--output", str(out)]) == 1
    assert gen_api.main(["--output", str(out)]) == 0
    assert gen_api.main(["--check", "--output", str(out)]) == 0

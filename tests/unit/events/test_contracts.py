"""Every emitted event has a contract, a JSON Schema and a sample, and they agree."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from docllm.events.contracts import CONTRACTS, DocumentRemoved, contract_for, parse_detail, to_bus
from docllm.events.envelope import BusEvent
from docllm.events.schemas import event_schema, schema_name
from docllm.exceptions import ContractError

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "events" / "samples"
SCHEMAS = REPO / "events" / "schemas"


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.DETAIL_TYPE)
def test_every_contract_has_a_sample_that_validates_against_its_schema(contract):
    sample = json.loads((SAMPLES / f"{schema_name(contract)}.json").read_text())
    jsonschema.validate(sample, json.loads((SCHEMAS / f"{schema_name(contract)}.json").read_text()))
    assert parse_detail(sample, contract).schema_version == 1


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.DETAIL_TYPE)
def test_exported_schemas_are_up_to_date_with_the_models(contract):
    on_disk = json.loads((SCHEMAS / f"{schema_name(contract)}.json").read_text())
    assert on_disk == json.loads(json.dumps(event_schema(contract))), "run: make schemas"


def test_every_sample_file_belongs_to_a_contract():
    names = {f"{schema_name(c)}.json" for c in CONTRACTS}
    assert {p.name for p in SAMPLES.glob("*.json")} == names


def test_sources_are_namespaced_and_detail_types_unique():
    assert all(c.SOURCE.startswith("docllm.") for c in CONTRACTS)
    assert len({(c.SOURCE, c.DETAIL_TYPE) for c in CONTRACTS}) == len(CONTRACTS)


def test_a_detail_with_an_unknown_field_is_rejected():
    event = to_bus(DocumentRemoved(doc_key="s3/a.md", bucket="raw")).to_wire()
    event["detail"]["surprise"] = 1
    with pytest.raises(ContractError):
        parse_detail(event, DocumentRemoved)


def test_parsing_with_the_wrong_contract_names_both_types():
    event = to_bus(DocumentRemoved(doc_key="s3/a.md", bucket="raw"))
    with pytest.raises(ContractError, match="Document Removed"):
        parse_detail(event, contract_for("docllm.ingest", "Document Processed"))


def test_wire_format_round_trips_through_the_envelope():
    wire = to_bus(DocumentRemoved(doc_key="s3/a.md", bucket="raw")).to_wire()
    assert wire["detail-type"] == "Document Removed" and wire["time"].endswith("Z")
    assert BusEvent.model_validate(wire).to_wire() == wire

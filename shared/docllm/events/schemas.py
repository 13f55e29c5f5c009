"""Export the JSON Schema of every event contract to ``events/schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docllm.events.contracts import CONTRACTS, EventDetail


def schema_name(contract: type[EventDetail]) -> str:
    return contract.DETAIL_TYPE.lower().replace(" ", "-")


def event_schema(contract: type[EventDetail]) -> dict[str, Any]:
    """The schema of the whole EventBridge event (envelope + this contract's detail)."""
    detail = contract.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://docllm.dev/events/{schema_name(contract)}.v{contract.model_fields['schema_version'].default}.json",
        "title": f"{contract.SOURCE} / {contract.DETAIL_TYPE}",
        "type": "object",
        "required": ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"],
        "properties": {
            "version": {"type": "string"},
            "id": {"type": "string"},
            "detail-type": {"const": contract.DETAIL_TYPE},
            "source": {"const": contract.SOURCE},
            "account": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "region": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string"}},
            "detail": {"$ref": "#/$defs/detail"},
        },
        "$defs": {**detail.pop("$defs", {}), "detail": detail},
    }


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for contract in CONTRACTS:
        path = out_dir / f"{schema_name(contract)}.json"
        path.write_text(json.dumps(event_schema(contract), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths

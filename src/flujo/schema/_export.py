"""``flujo schema export``: the JSON Schemas of the persisted formats, one file each.

Output is deterministic (sorted keys, stable ``$id``s, no timestamps) so that a diff in code
review shows exactly what changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..serialization import FORMAT_ID, TypeRegistry, tagged_format_schema, type_schema
from ..state import ENVELOPE_VERSION, WorkflowState, envelope_json_schema
from ._files import type_schema_file

SCHEMA_BASE = FORMAT_ID.rsplit("/", 1)[0]


def render_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_documents(registry: TypeRegistry, types: list[type]) -> dict[str, Any]:
    """Relative file name -> schema document, for everything ``export`` writes."""
    documents: dict[str, Any] = {"tagged-format.v1.schema.json":
                                 tagged_format_schema(registry, types)}
    codecs = {codec.tag: codec for codec in registry.codecs()}
    for cls in types:
        codec = registry.codec_for_type(cls)
        if codec is not None:
            codecs[codec.tag] = codec
    for tag, codec in sorted(codecs.items()):
        document = type_schema(registry, codec)
        file_name = type_schema_file(tag)
        document["$id"] = f"{SCHEMA_BASE}/{file_name}"
        documents[file_name] = document
    for file_name, document in _state_documents().items():
        documents[file_name] = document
    return documents


def _state_documents() -> dict[str, Any]:
    state = WorkflowState.model_json_schema()
    state["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    state["$id"] = f"{SCHEMA_BASE}/workflow-state.v1.schema.json"
    state["description"] = (
        "The fields of a run's state once its payload is decoded (the payload holds them as"
        " tagged values; created_at and updated_at come from the envelope header).")
    return {f"envelope.v{ENVELOPE_VERSION}.schema.json": envelope_json_schema(),
            "workflow-state.v1.schema.json": state}


def export(out_dir: Path, registry: TypeRegistry, types: list[type]) -> list[Path]:
    written = []
    for file_name, document in schema_documents(registry, types).items():
        target = out_dir / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = render_json(document)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def stale_files(out_dir: Path, registry: TypeRegistry, types: list[type]) -> list[str]:
    """Files under ``out_dir`` that differ from what ``export`` would write now."""
    stale = []
    for file_name, document in schema_documents(registry, types).items():
        target = out_dir / file_name
        if not target.exists() or target.read_text(encoding="utf-8") != render_json(document):
            stale.append(file_name)
    return stale

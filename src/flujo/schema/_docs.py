"""``flujo schema docs``: readable documentation of every stored type, from the registry.

Two phases: ``collect`` turns each codec into a ``TypeDoc`` (fields, version history,
an example in tagged form), then ``render_markdown`` / ``render_html`` write it. Output is
deterministic so a test can keep the committed pages current.
"""

from __future__ import annotations

import array
import enum
import html
import inspect
import ipaddress
import json
import os
import re
import sys
import time as clock
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import unquote
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from ..exceptions import FlujoError
from ..serialization import (
    ANCHOR,
    NO_DEFAULT,
    TypeCodec,
    TypeRegistry,
    inspect_type,
    safe_deserialize,
    safe_serialize,
    type_schema,
)
from ._files import file_stem, type_schema_file

_CONSTRAINTS = ("pattern", "format", "minimum", "maximum", "exclusiveMinimum",
                "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "enum",
                "const", "contentEncoding")
class ExamplePoint(BaseModel):
    """A model used only to show the ``models`` and ``rows`` forms in the generated docs."""

    x: int
    y: int


class ExampleTrack(BaseModel):
    """A model used only to show nested models in the ``rows`` form of the generated docs."""

    name: str
    points: list[ExamplePoint]


def _self_containing_list() -> list[Any]:
    loop: list[Any] = ["item"]
    loop.append(loop)
    return loop


_BUILTIN_EXAMPLES: dict[str, Any] = {
    "list": _self_containing_list(),  # an anchored list: one that holds itself
    "memoryview": memoryview(b"flujo"),
    "array": array.array("h", [1, -2, 3]),
    "struct_time": clock.gmtime(0),
    "models": [ExamplePoint(x=1, y=2), ExamplePoint(x=3, y=4)],
    "rows": [ExampleTrack(name="a", points=[ExamplePoint(x=1, y=2)]),
             ExampleTrack(name="b", points=[])],
    "datetime": datetime(2026, 3, 29, 3, 30, 15, 250000, tzinfo=ZoneInfo("Europe/Paris")),
    "date": date(2026, 3, 29),
    "time": time(9, 30, tzinfo=UTC),
    "timedelta": timedelta(days=1, seconds=3600, microseconds=5),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("1.10"),
    "float": float("inf"),
    "int": 2**70,
    "complex": complex(1.5, -2.0),
    "bytes": b"\x00\xffflujo",
    "bytearray": bytearray(b"\x00\xff"),
    "tuple": (1, "two"),
    "set": {"a", "b"},
    "frozenset": frozenset({1, 2}),
    "dict": {1: "one", (2, 3): "pair"},
    "path.posix": Path("/var/lib/flujo/state.db") if os.name == "posix" else None,
    "purepath.posix": PurePosixPath("/var/lib/flujo"),
    "purepath.windows": PureWindowsPath("C:/flujo/state.db"),
    "ipv4address": ipaddress.IPv4Address("192.0.2.1"),
    "ipv6address": ipaddress.IPv6Address("fe80::1%eth0"),
    "ipv4network": ipaddress.IPv4Network("192.0.2.0/24"),
    "ipv6network": ipaddress.IPv6Network("2001:db8::/32"),
    "ipv4interface": ipaddress.IPv4Interface("192.0.2.1/24"),
    "ipv6interface": ipaddress.IPv6Interface("2001:db8::1/64"),
    "zoneinfo": ZoneInfo("Europe/Paris"),
    "timezone": timezone(timedelta(hours=-5), "EST"),
    "pattern": re.compile(r"^(?P<id>\d+)-[a-z]+$", re.IGNORECASE),
}
_STRING_CANDIDATES = ("text", "EUR", "1.10", "2026-01-01", "a1", "0x1f", "nan")


@dataclass
class FieldDoc:
    name: str
    type_text: str
    required: bool
    default: str
    constraints: str
    links: list[str] = field(default_factory=list)


@dataclass
class TypeDoc:
    name: str
    tag: str
    kind: str
    version: int
    python: str
    description: str
    fields: list[FieldDoc]
    members: list[tuple[str, str]]
    history: list[str]
    example: Any
    schema_file: str


def collect(registry: TypeRegistry, types: Iterable[type] = ()) -> list[TypeDoc]:
    codecs = {codec.tag: codec for codec in registry.codecs()}
    for cls in types:
        codec = registry.codec_for_type(cls)
        if codec is not None:
            codecs[codec.tag] = codec
    return [_document(registry, codec) for _, codec in sorted(codecs.items())]


def _document(registry: TypeRegistry, codec: TypeCodec) -> TypeDoc:
    schema = type_schema(registry, codec)
    body = schema["$defs"][codec.tag]["properties"]["v"]
    if codec.kind == "model" and "anyOf" in body:
        body = body["anyOf"][0]  # fields are documented in their generic (tagged) form
    cls = codec.py_type
    return TypeDoc(
        name=codec.name, tag=codec.tag, kind=codec.kind, version=codec.version,
        python=_public_name(cls) if cls is not None else "",
        description=codec.description or (inspect.cleandoc(cls.__doc__) if cls is not None
                                           and codec.kind == "custom" and cls.__doc__ else ""),
        fields=_fields(registry, codec, body),
        members=[(m.name, repr(m.value)) for m in cls] if cls is not None  # type: ignore[attr-defined]
        and codec.kind == "enum" else [],
        history=_history(codec),
        example=_example(registry, codec, schema),
        schema_file=type_schema_file(codec.tag),
    )


def _history(codec: TypeCodec) -> list[str]:
    lines = [f"v1: first version{' (current)' if codec.version == 1 else ''}"]
    for start in range(1, codec.version):
        step = codec.migrations.get(start)
        if step is None:
            what = f"no migration registered: data at v{start} cannot be read"
        else:
            doc = inspect.getdoc(step)
            what = doc.splitlines()[0] if doc else f"migrated by {step.__qualname__}"
        current = " (current)" if start + 1 == codec.version else ""
        lines.append(f"v{start} → v{start + 1}{current}: {what}")
    return lines


def _annotation_text(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    text = repr(hint).replace("typing.", "")
    return re.sub(r"(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*)", r"\1", text)


def _linked(registry: TypeRegistry, hint: Any) -> list[str]:
    """Names of the documented (non-built-in) types an annotation mentions."""
    if isinstance(hint, type) and not typing.get_args(hint):
        codec = registry.codec_for_type(hint)
        return [codec.name] if codec is not None and codec.kind != "builtin" else []
    found: list[str] = []
    for part in typing.get_args(hint):
        found += [name for name in _linked(registry, part) if name not in found]
    return found


def _constraints(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    parts = [f"{key}: {json.dumps(schema[key], ensure_ascii=False)}"
             for key in _CONSTRAINTS if key in schema]
    return "; ".join(parts)


def _pointer(ref: str) -> list[str] | None:
    """The tokens of a ``$ref`` within the same document (``#/$defs/a~1b%40c``: a JSON
    Pointer, RFC 6901, written as a URI fragment), unescaped; None for any other ref."""
    if not ref.startswith("#"):
        return None
    pointer = unquote(ref[1:])
    if not pointer:
        return []
    if not pointer.startswith("/"):
        return None
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _resolve(document: Any, ref: str) -> Any:
    """The node ``ref`` points at in ``document``, or None when it points nowhere."""
    tokens = _pointer(ref)
    if tokens is None:
        return None
    node = document
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _def_key(ref: str) -> str | None:
    """The key of the top-level definition ``ref`` names (a tag, ``value``, ``tagged``), or
    None when it names anything else (a definition nested in one, as pydantic's are)."""
    tokens = _pointer(ref)
    return tokens[1] if tokens is not None and len(tokens) == 2 and tokens[0] == "$defs" \
        else None


def _json_type(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        tokens = _pointer(str(schema["$ref"]))
        return tokens[-1] if tokens else str(schema["$ref"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_json_type(s) for s in schema[key])
    declared = schema.get("type", "any")
    if declared == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_json_type(schema['items'])}"
    return "/".join(declared) if isinstance(declared, list) else str(declared)


def _fields(registry: TypeRegistry, codec: TypeCodec, body: Any) -> list[FieldDoc]:
    """The fields of ``codec``'s class, from the description schema export uses too
    (``inspect_type``); a type without one (a registered serializer's) lists the properties
    of its declared schema."""
    properties: dict[str, Any] = body.get("properties", {}) if isinstance(body, dict) else {}
    required = set(body.get("required", [])) if isinstance(body, dict) else set()
    cls = codec.py_type
    info = inspect_type(cls) if cls is not None and codec.kind in ("model", "dataclass") \
        else None
    if info is None or not info.fields:
        return [FieldDoc(name, _json_type(prop), name in required, "", _constraints(prop))
                for name, prop in properties.items()]
    return [FieldDoc(f.name, _annotation_text(f.annotation), f.required,
                     "factory" if f.default_factory
                     else "" if f.default is NO_DEFAULT else repr(f.default),
                     _constraints(properties.get(f.name)), _linked(registry, f.annotation))
            for f in info.fields]


def _public_name(cls: type) -> str:
    """``module.Qualname`` under the public module that exports the class where its home is
    a private one (Python 3.13's ``pathlib._local.PosixPath`` is ``pathlib.PosixPath``), so
    the pages are the same whichever Python generated them."""
    module = cls.__module__
    while "." in module and module.rpartition(".")[2].startswith("_"):
        parent = module.rpartition(".")[0]
        if getattr(sys.modules.get(parent), cls.__qualname__, None) is not cls:
            break
        module = parent
    return f"{module}.{cls.__qualname__}"


def _example(registry: TypeRegistry, codec: TypeCodec, document: Any) -> Any:
    value = _BUILTIN_EXAMPLES.get(codec.name)
    if codec.name == "models":  # what model_rows=False writes (rows@1 is the default)
        return safe_serialize(value, registry=TypeRegistry(model_rows=False))
    if codec.kind == "builtin" and value is not None:
        return safe_serialize(value, registry=registry)
    if codec.kind == "enum" and codec.py_type is not None:
        first: enum.Enum = next(iter(codec.py_type))  # type: ignore[call-overload]
        return safe_serialize(first, registry=registry)
    example = _Synth(registry, document).value(document["$defs"][codec.tag], 0)
    cls = codec.py_type
    if codec.kind == "model" and cls is not None and issubclass(cls, BaseModel):
        for name, info in cls.__pydantic_fields__.items():
            if not info.is_required() and info.default_factory is None:
                example["v"][name] = safe_serialize(info.default, registry=registry)
    return _as_written(registry, example)


def _as_written(registry: TypeRegistry, example: Any) -> Any:
    """What flujo writes for the value ``example`` (synthesized in the generic tagged form)
    describes: read back and written again, a model that takes the typed form shows it.
    Where the illustrative value does not read back (a placeholder, a constraint it does
    not meet), the synthesized form is shown; with its holes emptied first, once."""
    stateless = _without_state(example)
    for candidate in (stateless, _without_placeholders(stateless)):
        try:
            return safe_serialize(safe_deserialize(candidate, registry=registry),
                                  registry=registry)
        except (FlujoError, ValueError, TypeError):
            continue
    return example


def _without_state(data: Any) -> Any:
    """``data`` without the object states (``s``) the schema allows and the synthesizer
    fills with placeholders: a model without one has its fields set, no extras."""
    if isinstance(data, dict):
        return {key: _without_state(value) for key, value in data.items()
                if not (key == "s" and "$t" in data)}
    if isinstance(data, list):
        return [_without_state(item) for item in data]
    return data


def _without_placeholders(data: Any) -> Any:
    """``data`` with each list emptied whose items hold a synthesized hole (``None`` as a
    tagged object's value, or ``"..."``)."""
    if isinstance(data, dict):
        return {key: _without_placeholders(value) for key, value in data.items()}
    if isinstance(data, list):
        if any(_holey(item) for item in data):
            return []
        return [_without_placeholders(item) for item in data]
    return data


def _holey(data: Any) -> bool:
    if data == "...":
        return True
    if isinstance(data, dict):
        if "$t" in data and data.get("v") is None:
            return True
        return any(_holey(value) for value in data.values())
    if isinstance(data, list):
        return any(_holey(item) for item in data)
    return False


class _Synth:
    """An illustrative value that matches a schema (for docs, not for tests)."""

    def __init__(self, registry: TypeRegistry, document: Any) -> None:
        self.registry = registry
        self.document = document

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > 24:  # deep enough for nested models
            return None
        if "$ref" in schema:
            tag = _def_key(schema["$ref"])  # a tag, or value/tagged; None: pydantic's own
            if tag is not None:
                name = tag.rpartition("@")[0]
                if name in _BUILTIN_EXAMPLES and _BUILTIN_EXAMPLES[name] is not None:
                    return safe_serialize(_BUILTIN_EXAMPLES[name], registry=self.registry)
                if tag in ("value", "tagged"):
                    return "..."
            return self.value(_resolve(self.document, schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("examples"):
            return schema["examples"][0]
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
                return self.value(branches[0], depth + 1)
        kind = schema.get("type")
        kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties", {})
            return {name: self.value(prop, depth + 1) for name, prop in properties.items()
                    # a tagged object has an anchor only where the value holds it twice
                    if not (name == ANCHOR and "$t" in properties)}
        if kind == "array":
            if "prefixItems" in schema:
                return [self.value(item, depth + 1) for item in schema["prefixItems"]]
            return [self.value(schema.get("items", {}), depth + 1)]
        if kind == "string":
            pattern = schema.get("pattern")
            return next((c for c in _STRING_CANDIDATES
                         if pattern is None or re.search(pattern, c)), "...")
        if kind == "integer":
            return schema.get("minimum", 1)
        if kind == "number":
            return schema.get("minimum", 1.5)
        if kind == "boolean":
            return True
        return None


def _page_name(name: str) -> str:
    return file_stem(name) + ".md"


def render_markdown(doc: TypeDoc, schema_base: str) -> str:
    lines = [f"# `{doc.name}`", "",
             f"kind: {doc.kind} · current version: {doc.version} · tag: `{doc.tag}`"
             + (f" · Python: `{doc.python}`" if doc.python else ""), ""]
    if doc.description:
        lines += [doc.description, ""]
    if doc.members:
        lines += ["## Members", "", "| name | stored value |", "|---|---|"]
        lines += [f"| `{name}` | `{value}` |" for name, value in doc.members]
        lines.append("")
    if doc.fields:
        lines += ["## Fields", "", "| field | type | required | default | constraints |",
                  "|---|---|---|---|---|"]
        for f in doc.fields:
            links = ", ".join(f"[{n}]({_page_name(n)})" for n in f.links)
            type_text = f"`{f.type_text}`".replace("|", r"\|") + (f" ({links})" if links else "")
            default = f"`{f.default}`" if f.default else ""
            constraints = f.constraints.replace("|", r"\|")
            lines.append(f"| `{f.name}` | {type_text} | {'yes' if f.required else 'no'} | "
                         f"{default} | {constraints} |")
        lines.append("")
    lines += ["## Version history", ""] + [f"- {h}" for h in doc.history] + [""]
    lines += ["## Example (as stored)", "", "```json",
              json.dumps(doc.example, indent=2, ensure_ascii=False), "```", "",
              f"JSON Schema: [`{doc.schema_file}`]({schema_base}/{doc.schema_file})", ""]
    return "\n".join(lines)


def render_index(docs: list[TypeDoc]) -> str:
    lines = ["# Stored types", "",
             "Generated by `flujo schema docs` from the type registry; do not edit by hand.",
             "", "| type | kind | version | description |", "|---|---|---|---|"]
    for doc in docs:
        summary = doc.description.splitlines()[0] if doc.description else ""
        lines.append(f"| [`{doc.name}`]({_page_name(doc.name)}) | {doc.kind} | {doc.version} | "
                     f"{summary} |")
    return "\n".join(lines) + "\n"


def render_html(docs: list[TypeDoc]) -> str:
    """One self-contained page with every type."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Stored types</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
             "pre{background:#f6f6f6;padding:.5em}</style></head><body><h1>Stored types</h1>"]
    for doc in docs:
        anchor = html.escape(doc.name)
        parts.append(f"<h2 id='{anchor}'>{anchor}</h2><p>kind: {doc.kind} · version "
                     f"{doc.version} · tag <code>{html.escape(doc.tag)}</code></p>")
        if doc.description:
            parts.append(f"<p>{html.escape(doc.description)}</p>")
        if doc.fields:
            parts.append("<table><tr><th>field</th><th>type</th><th>required</th>"
                         "<th>default</th><th>constraints</th></tr>")
            for f in doc.fields:
                links = " ".join(f"<a href='#{html.escape(n)}'>{html.escape(n)}</a>"
                                 for n in f.links)
                parts.append(f"<tr><td>{html.escape(f.name)}</td><td><code>"
                             f"{html.escape(f.type_text)}</code> {links}</td><td>"
                             f"{'yes' if f.required else 'no'}</td><td>{html.escape(f.default)}"
                             f"</td><td>{html.escape(f.constraints)}</td></tr>")
            parts.append("</table>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(h)}</li>" for h in doc.history)
                     + "</ul>")
        parts.append(f"<pre>{html.escape(json.dumps(doc.example, indent=2))}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def documents(registry: TypeRegistry, types: Iterable[type],
              schema_base: str) -> dict[str, str]:
    """Relative file name -> Markdown text of every page ``flujo schema docs`` writes."""
    docs = collect(registry, types)
    pages = {_page_name(doc.name): render_markdown(doc, schema_base) for doc in docs}
    pages["index.md"] = render_index(docs)
    return pages

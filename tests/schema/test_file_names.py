"""One portable file-name rule for the schema files and the type pages (``_files``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flujo.schema import check_folder, documents, export
from flujo.schema._files import file_stem, name_of_stem
from flujo.serialization import TypeRegistry

SCHEMA_V1 = {"type": "object", "properties": {"cents": {"type": "integer"}},
             "required": ["cents"], "additionalProperties": False}
SCHEMA_V2 = {"type": "object", "properties": {"amount": {"type": "string"}},
             "required": ["amount"], "additionalProperties": False}


class Money:
    pass


def errors(findings: list[Any]) -> list[str]:
    return [f"{f.subject} {f.path} {f.reason}" for f in findings if f.severity == "error"]


_PORTABLE = re.compile(r"[A-Za-z0-9._@~-]+")


@given(st.text(min_size=1))
def test_every_name_has_one_portable_stem_and_comes_back(name: str) -> None:
    stem = file_stem(name)
    assert _PORTABLE.fullmatch(stem)
    assert name_of_stem(stem) == name


def test_plain_names_stay_as_they_are() -> None:
    assert file_stem("flujo.PipelineContext@1") == "flujo.PipelineContext@1"
    assert file_stem("opsapp:Ctx") == "opsapp~3ACtx"
    assert file_stem("Page[int]") == "Page~5Bint~5D"
    assert file_stem("a~3Ab") == "a~7E3Ab" != file_stem("a:b")
    assert file_stem("café") == "caf~C3~A9"
    assert name_of_stem("opsapp:Ctx@1") == "opsapp:Ctx@1"  # a folder written before the rule


def _registry(version: int, schema: dict[str, object], **options: object) -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Money, lambda m: {"cents": 1}, deserializer=lambda d: d, schema=schema,
        name="opsapp:Money", version=version, **options)  # type: ignore[arg-type]
    return registry


def test_export_check_and_docs_use_the_same_names(tmp_path: Path) -> None:
    registry = _registry(1, SCHEMA_V1)
    written = {p.relative_to(tmp_path).as_posix() for p in export(tmp_path, registry, [])}
    assert "types/opsapp~3AMoney@1.schema.json" in written
    assert not any(":" in name for name in written)
    assert errors(check_folder(tmp_path, registry, [])) == []
    assert errors(check_folder(tmp_path, _registry(1, SCHEMA_V2), [])) != []  # it was read
    pages = documents(registry, [], "../schemas")
    assert "opsapp~3AMoney.md" in pages
    assert "(../schemas/types/opsapp~3AMoney@1.schema.json)" in pages["opsapp~3AMoney.md"]
    assert "(opsapp~3AMoney.md)" in pages["index.md"]


def test_check_reads_a_folder_written_before_the_rule(tmp_path: Path) -> None:
    export(tmp_path, _registry(1, SCHEMA_V1), [])
    types = tmp_path / "types"
    (types / "opsapp~3AMoney@1.schema.json").rename(types / "opsapp:Money@1.schema.json")
    assert errors(check_folder(tmp_path, _registry(1, SCHEMA_V1), [])) == []
    found = errors(check_folder(tmp_path, _registry(1, SCHEMA_V2), []))
    assert any("without a version bump" in e for e in found), found


def test_windows_device_names_are_escaped() -> None:
    for name in ("con", "CON@1", "aux.models:Thing@1", "nul.x", "com1", "lpt9@2"):
        stem = file_stem(name)
        assert stem.startswith("~") and name_of_stem(stem) == name
    for name in ("console", "COM10", "comma", "lpt"):
        assert file_stem(name) == name

"""`flujo schema docs`: pages per type, kept current for this repository's own types."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Generic, TypeVar

import jsonschema
from pydantic import BaseModel, ConfigDict

from flujo.cli import main
from flujo.schema import collect, documents, render_html
from flujo.serialization import (
    TypeRegistry,
    safe_deserialize,
    safe_serialize,
    tagged_format_schema,
)

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Address(BaseModel):
    """Where parcels go."""

    city: str
    zip: str = "00000"


class Customer(BaseModel):
    """A paying customer."""

    name: str
    balance: Decimal
    address: Address | None = None


def v1_to_v2(v: dict[str, object]) -> dict[str, object]:
    """Split the old single `name` into first and last name."""
    return v


def test_committed_type_docs_are_current() -> None:
    """In a fresh process: other tests register types in this process's default registry."""
    result = subprocess.run([sys.executable, "-m", "flujo.cli", "schema", "docs", "--check"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_model_page_has_fields_links_history_and_a_valid_example() -> None:
    registry = TypeRegistry()
    registry.register_type(Customer, name="customer", version=2, migrations={1: v1_to_v2})
    registry.register_type(Address, name="address")
    pages = documents(registry, [], "../schemas")
    page = pages["customer.md"]
    assert "A paying customer." in page
    assert "| `balance` | `Decimal` | yes |" in page
    assert "[address](address.md)" in page
    assert "- v1 → v2 (current): Split the old single `name` into first and last name." in page
    assert "`customer@2`" in page
    assert "[`customer`](customer.md)" in pages["index.md"]
    doc = next(d for d in collect(registry) if d.name == "customer")
    schema = tagged_format_schema(registry, [Customer])
    jsonschema.Draft202012Validator(schema).validate(doc.example)
    assert doc.example["$t"] == "customer@2"
    # what is stored: the typed form ("v" a list), exactly what encoding the value writes
    assert isinstance(doc.example["v"], list)
    value = safe_deserialize(doc.example, registry=registry)
    assert type(value) is Customer and safe_serialize(value, registry=registry) == doc.example
    assert "## Example (as stored)" in page


class Loose(BaseModel):
    """A model that keeps extra fields: never the typed form."""

    model_config = ConfigDict(extra="allow")
    name: str


def test_a_page_shows_the_generic_form_where_a_type_is_stored_so() -> None:
    registry = TypeRegistry()
    registry.register_type(Loose, name="loose")
    doc = next(d for d in collect(registry) if d.name == "loose")
    assert doc.example["v"] == {"name": "text"} and "s" not in doc.example
    assert safe_serialize(safe_deserialize(doc.example, registry=registry),
                          registry=registry) == doc.example


class Part(BaseModel):
    n: int


class Box(BaseModel, Generic[T]):
    item: T
    part: Part


class Crate(BaseModel):
    box: Box[int]
    boxes: list[Box[str]]


def test_an_example_follows_escaped_and_nested_refs_all_the_way_down() -> None:
    """``Box[int]`` is defined under an escaped key (``Box%5Bint%5D``); pydantic's own
    definitions sit inside a tag's: the example is a whole, valid, decodable value."""
    registry = TypeRegistry()
    registry.register_type(Crate, name="crate")
    doc = next(d for d in collect(registry, [Crate]) if d.name == "crate")
    assert doc.example == {"$t": "crate@1", "v": [{"box": {"item": 1, "part": {"n": 1}},
                                                   "boxes": [{"item": "text",
                                                              "part": {"n": 1}}]}]}
    jsonschema.Draft202012Validator(tagged_format_schema(registry, [Crate])).validate(
        doc.example)
    value = safe_deserialize(doc.example, registry=registry)
    assert type(value) is Crate and type(value.boxes[0]) is Box[str]
    box = next(f for f in doc.fields if f.name == "box")
    assert box.type_text == "Box[int]"


def test_examples_of_every_builtin_type_match_their_schema() -> None:
    registry = TypeRegistry()
    validator = jsonschema.Draft202012Validator(tagged_format_schema(registry))
    for doc in collect(registry):
        validator.validate(doc.example)


def test_html_page_is_self_contained(tmp_path: Path) -> None:
    registry = TypeRegistry()
    registry.register_type(Customer, name="customer")
    page = render_html(collect(registry, [Customer]))
    assert page.startswith("<!doctype html>") and "<h2 id='customer'>" in page
    assert "http" not in page.split("<body>", 1)[1]  # no external assets
    out = tmp_path / "types"
    assert main(["schema", "docs", "--out", str(out), "--html", str(tmp_path / "t.html")]) == 0
    assert (out / "index.md").exists() and (tmp_path / "t.html").exists()


def test_pages_name_classes_by_their_public_module() -> None:
    # Python 3.13 moved PosixPath into pathlib._local; the pages must not depend on which
    # Python generated them.
    pages = documents(TypeRegistry(), [], "../schemas")
    assert "Python: `pathlib.PosixPath`" in pages["path.posix.md"]
    assert "Python: `pydantic_core.Url`" in pages["pydantic_core.Url.md"]


def test_every_type_page_is_in_the_site_navigation() -> None:
    listed = set(re.findall(r"- (types/[^\s]+\.md)", (REPO / "mkdocs.yml").read_text("utf-8")))
    pages = {f"types/{p.name}" for p in (REPO / "docs" / "types").glob("*.md")}
    assert listed == pages, (sorted(pages - listed), sorted(listed - pages))


def test_every_public_name_has_its_api_reference() -> None:
    import flujo
    import flujo.state
    import flujo.testing

    documented = set(re.findall(r"^::: ([\w.]+)", "\n".join(
        p.read_text("utf-8") for p in (REPO / "docs" / "reference").glob("*.md")), re.M))
    names = {name.rsplit(".", 1)[-1] for name in documented}
    if "flujo.exceptions" in documented:  # the whole module, every error in it
        import flujo.exceptions

        names |= set(flujo.exceptions.__all__)
    wanted = (set(flujo.__all__) - {"__version__"}) | {
        "StateBackend", "EnvelopeStateBackend", "InMemoryBackend", "FileBackend",
        "SQLiteBackend", "PostgresBackend", "backend_from_uri"} | (
        set(flujo.testing.__all__) - {"BAD_RUN_IDS"})
    assert sorted(wanted - names) == []

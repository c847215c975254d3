"""Golden envelopes: records written by every released envelope format must load forever.

``tests/golden/state/v<N>/`` holds records written by envelope format version N (``v0`` is
the bare state dict earlier flujo wrote). They are never edited or regenerated: a change that
breaks one of these tests breaks real stored data. When a new format version is released, add
``v<N+1>/`` with ``python scripts/write_goldens.py`` (it runs the ``write_*`` functions below,
which only write files that do not exist yet) and commit the new files.

The records were written with ``golden.Money`` at version 1 and state schema version 1; the
reader below is at ``golden.Money`` version 2 and state schema version 2, so loading them
exercises a per-type migration and a whole-state migration as well as every codec.
"""

from __future__ import annotations

import decimal
import enum
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flujo.serialization import TypeRegistry
from flujo.state import (
    ENVELOPE_VERSION,
    Encryption,
    EnvelopeCodec,
    FileBackend,
    StateMigrations,
    WorkflowState,
    migrate_all,
)
from flujo.testing import assert_identical

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "state"
#: Test-only key of the encrypted goldens (never use a key like this for real data).
GOLDEN_KEY = bytes(range(32))
GOLDEN_KEY_ID = "golden-key-1"
CREATED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
UPDATED = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)


class GoldenColor(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class GoldenPoint:
    x: int
    y: float


class GoldenLine(BaseModel):
    sku: str
    quantity: int
    price: decimal.Decimal


class GoldenOrder(BaseModel):
    id: uuid.UUID
    lines: list[GoldenLine]
    placed_at: datetime
    color: GoldenColor


@dataclass(frozen=True)
class Money:
    amount: decimal.Decimal
    currency: str


@dataclass(eq=False)
class GoldenNode:
    """A tree whose nodes point to their parent: a cycle (the references golden)."""

    name: str
    parent: GoldenNode | None = None
    children: list[GoldenNode] = field(default_factory=list)


def _register_shared(registry: TypeRegistry) -> TypeRegistry:
    registry.register_type(GoldenNode, name="golden.Node")
    registry.register_type(GoldenColor, name="golden.Color")
    registry.register_type(GoldenPoint, name="golden.Point")
    registry.register_type(GoldenLine, name="golden.Line")
    registry.register_type(GoldenOrder, name="golden.Order")
    return registry


def writer_registry() -> TypeRegistry:
    """How the goldens were written: golden.Money at version 1 (no currency)."""
    registry = _register_shared(TypeRegistry())
    registry.register_custom_serializer(
        Money,
        lambda m: {"amount": str(m.amount)},
        deserializer=lambda v: Money(decimal.Decimal(v["amount"]), "USD"),
        name="golden.Money",
    )
    return registry


def reader_registry() -> TypeRegistry:
    """Today's code: golden.Money at version 2, whose v1 records were all in EUR."""
    registry = _register_shared(TypeRegistry())
    registry.register_custom_serializer(
        Money,
        lambda m: {"amount": str(m.amount), "currency": m.currency},
        deserializer=lambda v: Money(decimal.Decimal(v["amount"]), v["currency"]),
        name="golden.Money",
        version=2,
        migrations={1: lambda v: {**v, "currency": "EUR"}},
    )
    return registry


def reader_migrations() -> StateMigrations:
    """Today's state schema (2): the context key ``client`` was renamed ``customer``."""
    migrations = StateMigrations(current_version=2)

    @migrations.register(1)
    def rename_client(state: dict[str, Any]) -> dict[str, Any]:
        context = state["pipeline_context"]
        context["customer"] = context.pop("client")
        return state

    return migrations


def written_context() -> dict[str, Any]:
    return {
        "client": "ACME Corp",
        "total": Money(decimal.Decimal("1234.50"), "USD"),
        "order": GoldenOrder(
            id=uuid.UUID("6f1b0b3e-4d5c-4a8e-9a7b-2c3d4e5f6a7b"),
            lines=[GoldenLine(sku="A-1", quantity=3, price=decimal.Decimal("9.99"))],
            placed_at=datetime(2024, 5, 31, 23, 59, tzinfo=UTC),
            color=GoldenColor.BLUE,
        ),
        "points": [GoldenPoint(1, 2.5), GoldenPoint(-3, 0.0)],
        "seen": {"a", "b"},
        "frozen": frozenset({1, 2}),
        "pair": (1, "one"),
        "due": date(2024, 7, 1),
        "timeout": timedelta(minutes=5),
        "blob": b"\x00\x01binary",
        "huge": 2**80,
        "ratio": 0.1,
        "by_id": {1: "first", 2: "second"},
        "text": "unicode ✓ and a NUL \x00",
    }


def expected_context() -> dict[str, Any]:
    context = written_context()
    context["total"] = Money(decimal.Decimal("1234.50"), "EUR")  # golden.Money 1 -> 2
    context["customer"] = context.pop("client")  # state schema 1 -> 2
    return context


def golden_state(run_id: str) -> WorkflowState:
    return WorkflowState(
        run_id=run_id,
        pipeline_name="golden",
        pipeline_version="1.4.0",
        current_step_index=2,
        pipeline_context=written_context(),
        last_step_output=[GoldenPoint(7, 7.5)],
        step_history=[{"step": "fetch", "ok": True}, {"step": "price", "ok": True}],
        status="paused",
        created_at=CREATED,
        updated_at=UPDATED,
    )


V1_CODECS: dict[str, dict[str, Any]] = {
    "plain": {},
    "zlib": {"compression": "zlib"},
    "zstd": {"compression": "zstd"},
    "aesgcm": {"encryption": Encryption.single(GOLDEN_KEY, GOLDEN_KEY_ID)},
    "zstd+aesgcm": {
        "compression": "zstd",
        "encryption": Encryption.single(GOLDEN_KEY, GOLDEN_KEY_ID),
    },
}


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("v*/*.json"))


def reader(directory: Path, *, encrypted: bool) -> FileBackend:
    encryption = None
    if encrypted:
        encryption = Encryption(
            {GOLDEN_KEY_ID: GOLDEN_KEY}, active_key_id=GOLDEN_KEY_ID, accept_plaintext=True
        )
    return FileBackend(
        directory, registry=reader_registry(), migrations=reader_migrations(), encryption=encryption
    )


def test_every_released_format_has_goldens() -> None:
    for version in range(ENVELOPE_VERSION + 1):
        assert list((GOLDEN / f"v{version}").glob("*.json")), f"no goldens for format v{version}"


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_golden_record_loads(path: Path, tmp_path: Path) -> None:
    await check_golden_record(path, tmp_path)


async def check_golden_record(path: Path, tmp_path: Path) -> None:
    """The golden record at ``path`` loads (in a store at ``tmp_path``) as written."""
    run_id = f"golden-{path.parent.name}-{path.stem}"
    shutil.copyfile(path, tmp_path / f"{run_id}.json")
    backend = reader(tmp_path, encrypted="aesgcm" in path.stem)
    record = await backend.load_record(run_id)
    assert record is not None
    state = record.state
    assert (state.run_id, state.pipeline_name, state.status) == (run_id, "golden", "paused")
    assert state.current_step_index == 2
    if path.parent.name == "v0":  # bare JSON from earlier flujo: plain values, no types
        assert state.pipeline_context == {"customer": "ACME Corp", "rows": 42}
        assert state.created_at == datetime(2023, 11, 2, 9, 15, tzinfo=UTC)
        return
    assert_identical(state.pipeline_context, expected_context())
    assert_identical(state.last_step_output, [GoldenPoint(7, 7.5)])
    assert state.step_history == [{"step": "fetch", "ok": True}, {"step": "price", "ok": True}]
    assert (state.created_at, state.updated_at) == (CREATED, UPDATED)
    assert (tmp_path / f"{run_id}.json").read_bytes() == path.read_bytes()  # untouched


async def test_golden_records_migrate_to_the_current_versions(tmp_path: Path) -> None:
    for path in golden_files():
        if "aesgcm" not in path.stem:
            shutil.copyfile(path, tmp_path / f"golden-{path.parent.name}-{path.stem}.json")
    backend = reader(tmp_path, encrypted=False)
    report = await migrate_all(backend)
    assert report.ok, report.summary()
    assert not report.up_to_date and len(report.changed) == len(list(tmp_path.glob("*.json")))
    assert (await migrate_all(backend)).changed == []
    for run_id in await backend.list_run_ids():
        record = await backend.load_record(run_id)
        assert record is not None and record.envelope.state_version == 2
        if "v0" not in run_id:
            assert record.envelope.manifest["golden.Money"] == 2
            assert_identical(record.state.pipeline_context, expected_context())


def write_missing_goldens(root: Path = GOLDEN) -> list[Path]:
    """Write goldens for the current format version under ``root``; never touches an
    existing file. Returns the files written."""
    directory = root / f"v{ENVELOPE_VERSION}"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, options in V1_CODECS.items():
        target = directory / f"{name}.json"
        if target.exists():
            continue
        codec = EnvelopeCodec(
            registry=writer_registry(), migrations=StateMigrations(current_version=1), **options
        )
        run_id = f"golden-v{ENVELOPE_VERSION}-{name}"
        encoded = codec.encode_state(golden_state(run_id))
        sealed = codec.seal(encoded, revision=3, created_at=CREATED, updated_at=UPDATED)
        target.write_bytes(sealed.raw + b"\n")
        written.append(target)
    return written


# -- shared references and cycles (docs/format.md), written by flujo 0.9 ---------------------
REFERENCES = GOLDEN.parent / "references" / "v1.json"


def references_context() -> dict[str, Any]:
    line = GoldenLine(sku="A-1", quantity=3, price=decimal.Decimal("9.99"))
    order = GoldenOrder(id=uuid.UUID("6f1b0b3e-4d5c-4a8e-9a7b-2c3d4e5f6a7b"), lines=[line, line],
                        placed_at=datetime(2024, 5, 31, 23, 59, tzinfo=UTC),
                        color=GoldenColor.RED)
    tags = ["urgent", "eu"]
    root = GoldenNode("root")
    root.children = [GoldenNode("a", parent=root), GoldenNode("b", parent=root)]
    loop: list[Any] = ["loop"]
    loop.append(loop)
    return {"order": order, "same_order": order, "tags": tags, "labels": {"tags": tags},
            "tree": root, "loop": loop, "unshared": [["x"], ["x"]]}


def _check_references(context: dict[str, Any]) -> None:
    order = context["order"]
    assert context["same_order"] is order and order.lines[0] is order.lines[1]
    assert order.lines[0] == GoldenLine(sku="A-1", quantity=3, price=decimal.Decimal("9.99"))
    assert context["labels"]["tags"] is context["tags"] == ["urgent", "eu"]
    root = context["tree"]
    assert [c.name for c in root.children] == ["a", "b"]
    assert all(child.parent is root for child in root.children)
    assert context["loop"][1] is context["loop"] and context["loop"][0] == "loop"
    assert context["unshared"] == [["x"], ["x"]]
    assert context["unshared"][0] is not context["unshared"][1]


async def test_golden_references_load(tmp_path: Path) -> None:
    """Shared objects and cycles as 0.9 first wrote them keep reading back with their
    identity (never regenerate the file; see tests/golden/state/README.md)."""
    shutil.copyfile(REFERENCES, tmp_path / "golden-references.json")
    record = await reader(tmp_path, encrypted=False).load_record("golden-references")
    assert record is not None
    _check_references(record.state.pipeline_context)
    assert {"list", "ref"} <= set(record.envelope.manifest)


def write_missing_references_golden(target: Path = REFERENCES) -> list[Path]:
    """Write the references golden at ``target`` unless it exists. Returns the files written."""
    if target.exists():
        return []
    target.parent.mkdir(parents=True, exist_ok=True)
    codec = EnvelopeCodec(registry=writer_registry(),
                          migrations=StateMigrations(current_version=2))
    state = golden_state("golden-references")
    state.pipeline_context = references_context()
    _check_references(references_context())
    encoded = codec.encode_state(state)
    sealed = codec.seal(encoded, revision=1, created_at=CREATED, updated_at=UPDATED)
    target.write_bytes(sealed.raw + b"\n")
    return [target]


# -- checkpoint chains (envelope version 2): a whole state, then deltas ----------------------
CHAIN = GOLDEN.parent / "chains" / "v2"
CHAIN_RUN = "golden-chain"


def chain_states() -> list[WorkflowState]:
    """The states the chain golden saved, in order: each step appends a point and a history
    entry; the last one pauses."""
    states = []
    context = written_context()
    history: list[Any] = []
    for step in range(4):
        context = {**context, "points": [*context["points"], GoldenPoint(step, step / 2)],
                   "ratio": step / 10}
        history = [*history, {"step": f"s{step}", "ok": True}]
        states.append(WorkflowState(
            run_id=CHAIN_RUN, pipeline_name="golden", pipeline_version="1.4.0",
            current_step_index=step + 1, pipeline_context=context,
            last_step_output=[GoldenPoint(step, 0.5)], step_history=history,
            status="paused" if step == 3 else "running"))
    return states


async def test_golden_chain_loads_and_migrates(tmp_path: Path) -> None:
    """A run stored as a whole state and the deltas after it, by 0.10 (never regenerate)."""
    shutil.copytree(CHAIN, tmp_path / "store")
    backend = reader(tmp_path / "store", encrypted=False)
    envelope = await backend._read(CHAIN_RUN)
    assert envelope is not None and b'"kind":"delta"' in envelope.raw
    record = await backend.load_record(CHAIN_RUN)
    assert record is not None and record.envelope.kind == "delta"
    expected = chain_states()[-1]
    context = dict(expected.pipeline_context)
    context["total"] = Money(decimal.Decimal("1234.50"), "EUR")  # golden.Money 1 -> 2
    context["customer"] = context.pop("client")  # state schema 1 -> 2
    assert_identical(record.state.pipeline_context, context)
    assert record.state.step_history == expected.step_history
    assert (record.state.status, record.state.current_step_index) == ("paused", 4)
    report = await migrate_all(backend)  # rewrites the head as one whole, current record
    assert report.ok and [c.run_id for c in report.changed] == [CHAIN_RUN]
    again = await backend.load_record(CHAIN_RUN)
    assert again is not None and again.envelope.kind == "state"
    assert_identical(again.state.pipeline_context, context)


async def write_missing_chain_golden(directory: Path = CHAIN) -> list[Path]:
    """Write the chain golden (a store) in ``directory`` unless it exists. Returns the files
    written."""
    if directory.exists():
        return []
    directory.mkdir(parents=True)
    backend = FileBackend(directory, registry=writer_registry(),
                          migrations=StateMigrations(current_version=1))
    backend.WHOLE_RECORD_BYTES = 0  # a chain of deltas, as small as the states are
    for saved in chain_states():
        await backend.save_state(CHAIN_RUN, saved)
    await backend.close()
    for path in directory.rglob("*"):
        if path.is_dir() and path.name == ".locks":
            shutil.rmtree(path)
    return sorted(path for path in directory.rglob("*") if path.is_file())


async def test_the_writers_write_what_the_tests_read_and_never_rewrite(tmp_path: Path) -> None:
    """What scripts/write_goldens.py writes for the next format version passes the tests
    above; files that exist, the committed ones first, are left alone."""
    written = write_missing_goldens(tmp_path / "state")
    assert sorted(path.stem for path in written) == sorted(V1_CODECS)
    for path in written:
        (tmp_path / f"read-{path.stem}").mkdir()
        await check_golden_record(path, tmp_path / f"read-{path.stem}")
    assert write_missing_goldens(tmp_path / "state") == []
    references = tmp_path / "references" / "v1.json"
    assert write_missing_references_golden(references) == [references]
    shutil.copyfile(references, tmp_path / "golden-references.json")
    record = await reader(tmp_path, encrypted=False).load_record("golden-references")
    assert record is not None
    _check_references(record.state.pipeline_context)
    chain = await write_missing_chain_golden(tmp_path / "chain")
    assert chain and await write_missing_chain_golden(tmp_path / "chain") == []
    loaded = await reader(tmp_path / "chain", encrypted=False).load_record(CHAIN_RUN)
    assert loaded is not None and loaded.envelope.kind == "delta"
    before = {path: path.read_bytes() for path in GOLDEN.parent.rglob("*") if path.is_file()}
    assert write_missing_goldens() == [] and write_missing_references_golden() == []
    assert await write_missing_chain_golden() == []
    assert {path: path.read_bytes() for path in GOLDEN.parent.rglob("*")
            if path.is_file()} == before

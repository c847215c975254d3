"""Whole-state migrations, per-type migrations through the backends, and migrate_all."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    EncryptionError,
    FutureVersionError,
    MigrationError,
    MissingMigrationError,
    RegistrationError,
    StateConflictError,
    UnknownTypeError,
)
from flujo.serialization import TypeRegistry
from flujo.state import (
    Encryption,
    FileBackend,
    InMemoryBackend,
    StateBackend,
    StateMigrations,
    WorkflowState,
    migrate_all,
)
from flujo.state import _migrations as migrations_module
from flujo.state._jsonio import dumps, loads


@dataclass(frozen=True)
class Money:
    amount: decimal.Decimal
    currency: str


def registry_v1() -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Money,
        lambda m: {"amount": str(m.amount)},
        deserializer=lambda v: Money(decimal.Decimal(v["amount"]), "USD"),
        name="test.Money",
    )
    return registry


def registry_v2() -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Money,
        lambda m: {"amount": str(m.amount), "currency": m.currency},
        deserializer=lambda v: Money(decimal.Decimal(v["amount"]), v["currency"]),
        name="test.Money",
        version=2,
        migrations={1: lambda v: {**v, "currency": "EUR"}},
    )
    return registry


def state(run_id: str, **context: Any) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="billing", pipeline_context=context)


# -- the registry ----------------------------------------------------------------------------


def test_registry_rules() -> None:
    migrations = StateMigrations(current_version=3)

    @migrations.register(1)
    def one(s: dict[str, Any]) -> dict[str, Any]:
        return s

    assert migrations.steps() == {1: one}
    assert migrations.missing_steps() == [2]
    with pytest.raises(RegistrationError, match="already registered"):
        migrations.register(1, one)
    for bad in (0, -1, True, "1"):
        with pytest.raises(RegistrationError):
            migrations.register(bad, one)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError):
        migrations.register(2, "not callable")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError):
        StateMigrations(current_version=0)


def test_chain_is_applied_in_order() -> None:
    migrations = StateMigrations(current_version=4)
    migrations.register(1, lambda s: {**s, "trail": [*s.get("trail", []), 1]})
    migrations.register(2, lambda s: {**s, "trail": [*s["trail"], 2]})
    migrations.register(3, lambda s: {**s, "trail": [*s["trail"], 3]})
    assert migrations.migrate({}, 1, what="x") == {"trail": [1, 2, 3]}
    assert migrations.migrate({"trail": []}, 3, what="x") == {"trail": [3]}
    assert migrations.migrate({"same": 1}, 4, what="x") == {"same": 1}


def test_chain_failures_are_typed() -> None:
    migrations = StateMigrations(current_version=3)
    with pytest.raises(FutureVersionError, match="version 4"):
        migrations.migrate({}, 4, what="run 'r'")
    with pytest.raises(MissingMigrationError, match="from version 1 to 2"):
        migrations.migrate({}, 1, what="run 'r'")

    def broken(s: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("client")

    migrations.register(1, broken)
    with pytest.raises(MigrationError, match=r"1 -> 2 .*KeyError") as info:
        migrations.migrate({}, 1, what="run 'r'")
    assert isinstance(info.value.__cause__, KeyError)

    other = StateMigrations(current_version=2)
    other.register(1, lambda s: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(MigrationError, match="returned NoneType"):
        other.migrate({}, 1, what="run 'r'")


def test_module_level_helpers_use_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = StateMigrations()
    monkeypatch.setattr(migrations_module, "_DEFAULT", fresh)
    migrations_module.set_state_version(2)

    @migrations_module.register_state_migration(1)
    def step(s: dict[str, Any]) -> dict[str, Any]:
        return s

    assert migrations_module.default_state_migrations() is fresh
    assert fresh.current_version == 2 and fresh.steps() == {1: step}


# -- per-type migrations through a backend ----------------------------------------------------


async def test_per_type_migration_on_load_and_migrate_all() -> None:
    old = InMemoryBackend(registry=registry_v1())
    await old.save_state("inv", state("inv", total=Money(decimal.Decimal("9.50"), "USD")))
    raw = old.raw_records()["inv"]
    assert loads(raw)["manifest"] == {"test.Money": 1}

    new = InMemoryBackend(registry=registry_v2())
    new.put_raw("inv", raw)
    loaded = await new.load_state("inv")
    assert loaded is not None
    assert loaded["pipeline_context"] == {"total": Money(decimal.Decimal("9.50"), "EUR")}
    assert new.raw_records()["inv"] == raw  # loading never rewrites

    report = await migrate_all(new, dry_run=True)
    assert [(c.run_id, c.reasons, c.to_revision) for c in report.changed] == [
        ("inv", ("type test.Money 1 -> 2",), None)
    ]
    assert new.raw_records()["inv"] == raw
    report = await migrate_all(new)
    assert report.ok and report.changed[0].to_revision == 2
    assert loads(new.raw_records()["inv"])["manifest"] == {"test.Money": 2}
    assert (await migrate_all(new)).up_to_date == ["inv"]


async def test_newer_type_version_is_refused() -> None:
    new = InMemoryBackend(registry=registry_v2())
    await new.save_state("inv", state("inv", total=Money(decimal.Decimal(1), "EUR")))
    old = InMemoryBackend(registry=registry_v1())
    old.put_raw("inv", new.raw_records()["inv"])
    with pytest.raises(FutureVersionError, match=r"test\.Money"):
        await old.load_state("inv")


async def test_unknown_type_is_refused_with_the_run_named() -> None:
    writer = InMemoryBackend(registry=registry_v1())
    await writer.save_state("inv", state("inv", total=Money(decimal.Decimal(1), "USD")))
    reader = InMemoryBackend(registry=TypeRegistry())
    reader.put_raw("inv", writer.raw_records()["inv"])
    with pytest.raises(UnknownTypeError) as info:
        await reader.load_state("inv")
    assert any("'inv'" in note for note in getattr(info.value, "__notes__", []))


# -- migrate_all ------------------------------------------------------------------------------


def renaming_v2() -> StateMigrations:
    migrations = StateMigrations(current_version=2)

    @migrations.register(1)
    def rename(s: dict[str, Any]) -> dict[str, Any]:
        context = s["pipeline_context"]
        if "client" in context:
            context["customer"] = context.pop("client")
        return s

    return migrations


async def test_migrate_all_rewrites_what_it_can_and_reports_the_rest(tmp_path: Path) -> None:
    v1 = FileBackend(tmp_path, migrations=StateMigrations(1))
    await v1.save_state("old", state("old", client="ACME"))
    await v1.save_state("future", state("future"))
    future_raw = dumps({**loads(v1.file_for("future").read_bytes()), "state_version": 9})
    v1.file_for("future").write_bytes(future_raw)
    v1.file_for("broken").write_bytes(b'{"format": "flujo.state", "envelope_')
    v1.file_for("legacy").write_bytes(
        dumps({"run_id": "legacy", "status": "paused", "pipeline_context": {"client": "Old"}})
    )

    v2 = FileBackend(tmp_path, migrations=renaming_v2())
    await v2.save_state("current", state("current", customer="New"))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}

    report = await migrate_all(v2, dry_run=True)
    assert report.scanned == 5 and report.up_to_date == ["current"]
    assert sorted(c.run_id for c in report.changed) == ["legacy", "old"]
    assert {f.run_id: type(f.error) for f in report.failed} == {
        "broken": CorruptStateError,
        "future": FutureVersionError,
    }
    assert "would rewrite 2" in report.summary() and "FAILED future" in report.summary()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == before

    report = await migrate_all(v2)
    assert not report.ok and len(report.changed) == 2
    legacy_change = next(c for c in report.changed if c.run_id == "legacy")
    assert "envelope format 0 -> 2" in legacy_change.reasons
    for run_id, name in [("old", "ACME"), ("legacy", "Old")]:
        record = await v2.load_record(run_id)
        assert record is not None and record.envelope.state_version == 2
        assert record.state.pipeline_context == {"customer": name}
    assert v2.file_for("future").read_bytes() == future_raw
    assert v2.file_for("broken").read_bytes() == before["broken.json"]

    again = await migrate_all(v2)
    assert sorted(again.up_to_date) == ["current", "legacy", "old"]
    assert not again.changed


async def test_migrate_all_re_encrypts_and_encrypts_plaintext() -> None:
    old_key, new_key = Encryption.generate_key(), Encryption.generate_key()
    first = InMemoryBackend(encryption=Encryption.single(old_key, "k1"))
    await first.save_state("a", state("a", n=1))
    plain = InMemoryBackend()
    await plain.save_state("b", state("b", n=2))

    rotating = InMemoryBackend(
        encryption=Encryption({"k1": old_key, "k2": new_key}, "k2", accept_plaintext=True)
    )
    rotating.put_raw("a", first.raw_records()["a"])
    rotating.put_raw("b", plain.raw_records()["b"])
    report = await migrate_all(rotating)
    assert {c.run_id: c.reasons for c in report.changed} == {
        "a": ("key k1 -> k2",),
        "b": ("codec json -> json+aesgcm",),
    }
    only_new = InMemoryBackend(encryption=Encryption.single(new_key, "k2"))
    for run_id, n in [("a", 1), ("b", 2)]:
        only_new.put_raw(run_id, rotating.raw_records()[run_id])
        loaded = await only_new.load_state(run_id)
        assert loaded is not None and loaded["pipeline_context"] == {"n": n}


class _RacingBackend(InMemoryBackend):
    """Saves the run behind migrate_all's back between its read and its write."""

    async def _read_chain(self, run_id: str) -> Any:
        chain = await super()._read_chain(run_id)
        await self.save_state(run_id, state(run_id, client="concurrent"))
        return chain


async def test_migrate_all_never_overwrites_a_concurrent_save() -> None:
    writer = InMemoryBackend(migrations=StateMigrations(1))
    await writer.save_state("r", state("r", client="ACME"))
    racing = _RacingBackend(migrations=renaming_v2())
    racing.put_raw("r", writer.raw_records()["r"])
    report = await migrate_all(racing)
    assert [type(f.error) for f in report.failed] == [StateConflictError]


async def test_migrate_all_needs_an_envelope_backend() -> None:
    class Minimal(StateBackend):
        async def save_state(
            self, run_id: str, state: Any, *, expected_revision: Any = None
        ) -> None:
            return None

        async def load_state(self, run_id: str) -> None:
            return None

        async def delete_state(self, run_id: str) -> None:
            return None

    with pytest.raises(BackendConfigError, match="EnvelopeStateBackend"):
        await migrate_all(Minimal())


async def test_migrate_all_binds_records_to_the_store_name() -> None:
    key = Encryption.generate_key()
    before = InMemoryBackend(encryption=Encryption.single(key, "k1"))
    await before.save_state("a", state("a", n=1))
    window = InMemoryBackend(encryption=Encryption(
        {"k1": key}, "k1", store="orders-prod", accept_unbound=True))
    window.put_raw("a", before.raw_records()["a"])
    report = await migrate_all(window)
    assert {c.run_id: c.reasons for c in report.changed} == {
        "a": ("bound to store 'orders-prod'",)}
    assert (await migrate_all(window)).up_to_date == ["a"]
    named = InMemoryBackend(encryption=Encryption.single(key, "k1", store="orders-prod"))
    named.put_raw("a", window.raw_records()["a"])
    loaded = await named.load_state("a")
    assert loaded is not None and loaded["pipeline_context"] == {"n": 1}
    before.put_raw("a", window.raw_records()["a"])
    with pytest.raises(EncryptionError):  # no longer what a store without the name reads
        await before.load_state("a")

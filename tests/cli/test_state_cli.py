"""``flujo state ...``: every command against SQLite, file and PostgreSQL stores.

PostgreSQL: ``FLUJO_TEST_POSTGRES_DSN`` (default: the local trust-auth server), one uniquely
named schema for this module, dropped at the end; skipped when unreachable unless
``FLUJO_REQUIRE_POSTGRES`` is set, where it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import json
import os
import pty
import re
import select
import sqlite3
import stat
import subprocess
import sys
import textwrap
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

import flujo
from flujo.cli import _output, _state_write
from flujo.cli._state import (
    EXIT_CODES,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    add_state_commands,
    redact_uri,
)
from flujo.exceptions import BackendConfigError, StateConflictError
from flujo.serialization import TypeRegistry
from flujo.state import (
    Encryption,
    EnvelopeStateBackend,
    MigrationFailure,
    MigrationReport,
    StateRecord,
    WorkflowState,
    backend_from_uri,
    migrate_all,
)
from flujo.testing import assert_identical

MADRID = ZoneInfo("Europe/Madrid")
KINDS = ["sqlite", "file", "postgres"]
DAMAGED = b'{"format": "something else"}'


class Customer(BaseModel):
    name: str
    since: dt.date


class Tally(BaseModel):
    n: int


@dataclass
class Cell:
    value: int


def sample_state(run_id: str, **fields: Any) -> WorkflowState:
    context = {
        "customer": Customer(name="ACME", since=dt.date(2020, 2, 29)),
        "total": Decimal("10.90"),
        "at": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=MADRID),
        "tags": {"b", "a"},
        "pair": (1, "x"),
        "big": 2**80,
    }
    fields.setdefault("pipeline_name", "orders")
    fields.setdefault("current_step_index", 1)
    return WorkflowState(run_id=run_id, pipeline_context=context,
                         step_names=["fetch", "price", "ship"], **fields)


LEGACY = {  # a bare state dict, as earlier flujo's FileBackend wrote it
    "run_id": "old-1", "pipeline_name": "orders", "pipeline_version": "1",
    "current_step_index": 1, "pipeline_context": {"n": 1}, "last_step_output": None,
    "step_history": [], "status": "running", "created_at": "2024-01-01T10:00:00",
    "updated_at": "2024-01-01T10:05:00", "error_message": None,
}


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Store:
    """A store the CLI reaches by URI (plus options), and that the test opens directly."""

    kind: str
    uri: str
    cli_args: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, **options: Any) -> EnvelopeStateBackend:
        backend = backend_from_uri(self.uri, **self.options, **options)
        assert isinstance(backend, EnvelopeStateBackend)
        return backend

    def run(self, coro_fn: Any, **options: Any) -> Any:
        async def go() -> Any:
            async with self.open(**options) as backend:
                return await coro_fn(backend)

        return asyncio.run(go())

    def save(self, *states: WorkflowState, **options: Any) -> None:
        async def go(backend: EnvelopeStateBackend) -> None:
            for state in states:
                await backend.save_state(state.run_id, state)

        self.run(go, **options)

    def record(self, run_id: str, **options: Any) -> StateRecord | None:
        async def go(backend: EnvelopeStateBackend) -> StateRecord | None:
            return await backend.load_record(run_id)

        result: StateRecord | None = self.run(go, **options)
        return result

    def prepare(self) -> None:
        """Create the store's database and table (reads never do): a save, then a delete."""
        async def go(backend: EnvelopeStateBackend) -> None:
            await backend.save_state("prepare", WorkflowState(run_id="prepare"))
            await backend.delete_state("prepare")

        self.run(go)

    def ids(self) -> list[str]:
        async def go(backend: EnvelopeStateBackend) -> list[str]:
            return await backend.list_run_ids()

        result: list[str] = self.run(go)
        return result

    def codec_of(self, run_id: str) -> str:
        async def go(backend: EnvelopeStateBackend) -> str:
            envelope = await backend.read_envelope(run_id)
            assert envelope is not None
            return envelope.codec

        result: str = self.run(go)
        return result

    def put_raw(self, run_id: str, raw: bytes) -> None:
        """Store bytes as a run's record, bypassing every check."""
        if self.kind == "file":
            Path(self.uri.removeprefix("file://"), f"{run_id}.json").write_bytes(raw)
            return
        self.prepare()
        if self.kind == "sqlite":
            with sqlite3.connect(self.uri.removeprefix("sqlite:///")) as conn:
                conn.execute(
                    "INSERT INTO flujo_state (run_id, revision, status, pipeline_name,"
                    " state_version, created_at, updated_at, envelope) VALUES (?, 1, 'running',"
                    " '', 1, '2000-01-01T00:00:00.000000+00:00',"
                    " '2000-01-01T00:00:00.000000+00:00', ?)"
                    " ON CONFLICT(run_id) DO UPDATE SET envelope = excluded.envelope",
                    (run_id, raw.decode()))
            return
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(
                f'INSERT INTO "{self.options["schema"]}"."{self.options["table"]}" (run_id,'
                " revision, status, pipeline_name, state_version, created_at, updated_at,"
                " envelope) VALUES (%s, 1, 'running', '', 1, now(), now(), %s::json)"
                " ON CONFLICT (run_id) DO UPDATE SET envelope = EXCLUDED.envelope",
                (run_id, raw.decode()))

    def get_raw(self, run_id: str) -> bytes:
        if self.kind == "file":
            return Path(self.uri.removeprefix("file://"), f"{run_id}.json").read_bytes()
        if self.kind == "sqlite":
            with sqlite3.connect(self.uri.removeprefix("sqlite:///")) as conn:
                row = conn.execute("SELECT envelope FROM flujo_state WHERE run_id = ?",
                                   (run_id,)).fetchone()
            return str(row[0]).encode()
        import psycopg

        with psycopg.connect(self.uri) as conn:
            row = conn.execute(
                f'SELECT envelope::text FROM "{self.options["schema"]}"."{self.options["table"]}"'
                " WHERE run_id = %s", (run_id,)).fetchone()
        assert row is not None
        return str(row[0]).encode()


@pytest.fixture(scope="module")
def pg(postgres_schemas: Callable[[str], tuple[str, str]]) -> tuple[str, str]:
    return postgres_schemas("flujo_cli")


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
               name: str = "a") -> Store:
    if kind == "sqlite":
        return Store(kind, f"sqlite:///{tmp_path / f'{name}.db'}")
    if kind == "file":
        directory = tmp_path / f"{name}-runs"
        directory.mkdir()
        return Store(kind, f"file://{directory}")
    dsn, schema = request.getfixturevalue("pg")
    table = f"t_{uuid.uuid4().hex[:16]}"
    return Store(kind, dsn, ["--pg-schema", schema, "--table", table, "--connect-timeout", "5"],
                 {"schema": schema, "table": table})


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store(request.param, tmp_path, request)


@pytest.fixture(params=["sqlite", "file"])
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store(request.param, tmp_path, request)


# -- running the CLI -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flujo")
    commands = root.add_subparsers(dest="command", required=True)
    add_state_commands(commands)
    return root


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str, store: Store | None = None) -> Result:
        args = [*argv, "--store", store.uri, *store.cli_args] if store else list(argv)
        namespace = parser().parse_args(["state", *args])
        code = namespace.handler(namespace)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def tsv(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines()]


# -- ls ----------------------------------------------------------------------------------------


def test_ls_lists_runs_newest_first_with_step_and_filters(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"),
               sample_state("r2", status="failed", error="boom", current_step_index=2),
               sample_state("r3", pipeline_name="billing", current_step_index=3,
                            status="completed"))
    result = cli("ls", store=store)
    assert result.code == EXIT_OK, result.err
    rows = tsv(result.out)
    assert rows[0] == ["RUN_ID", "STATUS", "PIPELINE", "STEP", "REVISION", "UPDATED"]
    assert [r[:5] for r in rows[1:]] == [
        ["r3", "completed", "billing", "3/3 done", "1"],
        ["r2", "failed", "orders", "3/3 ship", "1"],
        ["r1", "running", "orders", "2/3 price", "1"],
    ]
    assert dt.datetime.fromisoformat(rows[1][5]).tzinfo is not None

    assert tsv(cli("ls", "--status", "failed", "--no-header", store=store).out) == [rows[2]]
    assert [r[0] for r in tsv(cli("ls", "--pipeline", "orders", "--no-header",
                                  store=store).out)] == ["r2", "r1"]
    assert [r[0] for r in tsv(cli("ls", "--limit", "1", "--offset", "1", "--no-header",
                                  store=store).out)] == ["r2"]
    listed = cli("ls", "--format", "json", store=store).out
    lines = [json.loads(line) for line in listed.splitlines()]
    assert lines[2] == {**lines[2], "run_id": "r1", "step": 1, "step_name": "price", "steps": 3,
                        "status": "running", "pipeline_name": "orders", "revision": 1}


def test_ls_table_for_people(cli: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"))
    result = cli("ls", "--format", "table", store=store)
    assert result.code == EXIT_OK
    assert "RUN ID" in result.out and "2/3 price" in result.out and "\t" not in result.out
    empty = make_store("sqlite", tmp_path, request, "empty")
    empty.prepare()
    assert empty.ids() == []
    assert "no runs" in cli("ls", "--format", "table", store=empty).out


def test_ls_rich_only_on_a_terminal(cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"))
    monkeypatch.setattr(_output, "_is_tty", lambda stream: True)
    assert "RUN ID" in cli("ls", store=store).out
    monkeypatch.setattr(_output, "_rich_available", lambda: False)
    assert cli("ls", store=store).out.startswith("RUN_ID\t")


# -- show --------------------------------------------------------------------------------------


def test_show_prints_the_decoded_state_with_its_types(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"))
    result = cli("show", "r1", store=store)
    assert result.code == EXIT_OK, result.err
    assert "step:\t2/3 price" in result.out
    assert "revision:\t1" in result.out
    assert "decimal@1" in result.out  # the type versions of the record
    for text in ("Customer(name='ACME', since=datetime.date(2020, 2, 29))",
                 "Decimal('10.90')", "fold=1", "ZoneInfo(key='Europe/Madrid')",
                 "'pair': (1, 'x')", str(2**80)):
        assert text in result.out


def test_show_raw_and_json(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"))
    raw = json.loads(cli("show", "r1", "--raw", store=store).out)
    assert (raw["format"], raw["run_id"], raw["revision"], raw["codec"]) == (
        "flujo.state", "r1", 1, "json")
    assert raw["payload"]["fields"]["pipeline_context"]["total"] == {"$t": "decimal@1",
                                                                     "v": "10.90"}
    plain = json.loads(cli("show", "r1", "--json", store=store).out)
    assert plain["pipeline_context"]["total"] == "10.90"
    assert plain["pipeline_context"]["customer"] == {"name": "ACME", "since": "2020-02-29"}


def test_show_masks_secrets_and_refuses_a_reference_bomb(store: Store, cli: Any) -> None:
    """Secrets are stored so that they come back, and never shown: not decoded, not raw,
    not as JSON. A value whose shared objects would print as more values than any terminal
    holds is refused, not printed (docs/format.md, "Shared references and cycles")."""
    from pydantic import SecretBytes, SecretStr

    state = sample_state("s1")
    state.pipeline_context["token"] = SecretStr("hunter2")
    state.pipeline_context["key"] = SecretBytes(b"opensesame")
    store.save(state)
    for extra in ([], ["--raw"], ["--json"]):
        result = cli("show", "s1", *extra, store=store)
        assert result.code == EXIT_OK, result.err
        assert "hunter2" not in result.out and "b3BlbnNlc2FtZQ" not in result.out
        assert "opensesame" not in result.out and "**********" in result.out
    level: list[Any] = [0]
    for _ in range(30):
        level = [level] * 10
    bomb = sample_state("b1")
    bomb.pipeline_context["bomb"] = level
    store.save(bomb)
    for extra in ([], ["--json"]):
        result = cli("show", "b1", *extra, store=store)
        assert result.code != EXIT_OK and "written out" in result.err
    assert cli("show", "b1", "--raw", store=store).code == EXIT_OK  # as stored: linear


def test_show_missing_run(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"))
    for extra in ([], ["--raw"]):
        result = cli("show", "nope", *extra, store=store)
        assert result.code == EXIT_NOT_FOUND
        assert "no run 'nope'" in result.err


def test_bad_run_id_is_a_usage_error(cli: Any, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    store = make_store("file", tmp_path, request)
    for command in (["show", "../etc"], ["delete", "--yes", "a/b"], ["export", ".hidden"]):
        result = cli(*command, store=store)
        assert result.code == EXIT_USAGE, command
        assert "run id" in result.err


# -- export / import ---------------------------------------------------------------------------


def assert_same_runs(source: Store, target: Store, run_ids: list[str], **options: Any) -> None:
    for run_id in run_ids:
        before, after = source.record(run_id, **options), target.record(run_id, **options)
        assert before is not None and after is not None
        assert_identical(after.state.to_dict(), before.state.to_dict())
        header_before = {**before.envelope.header(), "revision": None}
        header_after = {**after.envelope.header(), "revision": None}
        assert header_after == header_before


@pytest.mark.parametrize(("source_kind", "target_kind"), [
    ("sqlite", "file"), ("file", "sqlite"), ("sqlite", "postgres"), ("postgres", "file")])
def test_export_import_round_trip_between_backends(
        source_kind: str, target_kind: str, cli: Any, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    source = make_store(source_kind, tmp_path, request, "source")
    target = make_store(target_kind, tmp_path, request, "target")
    source.save(sample_state("r1"), sample_state("r2", status="failed", error="x\ny"))
    dump = tmp_path / "runs.jsonl"
    result = cli("export", "--out", str(dump), store=source)
    assert result.code == EXIT_OK, result.err
    assert "exported 2 run(s)" in result.err
    lines = dump.read_bytes().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["format"] == "flujo.state" for line in lines)
    assert not list(tmp_path.glob(".runs.jsonl.partial"))

    result = cli("import", str(dump), store=target)
    assert result.code == EXIT_OK, result.err
    assert "imported 2 run(s)" in result.err
    assert sorted(target.ids()) == ["r1", "r2"]
    assert_same_runs(source, target, ["r1", "r2"])


def test_export_to_stdout_import_from_stdin(cli: Any, tmp_path: Path,
                                            request: pytest.FixtureRequest,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_store("file", tmp_path, request, "source")
    target = make_store("sqlite", tmp_path, request, "target")
    source.save(sample_state("r1"), sample_state("r2"))
    exported = cli("export", store=source)
    assert exported.code == EXIT_OK
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(exported.out.encode())))
    result = cli("import", "-", store=target)
    assert result.code == EXIT_OK, result.err
    assert_same_runs(source, target, ["r1", "r2"])


def test_export_chosen_runs_and_filters(cli: Any, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), sample_state("r2", status="failed"), sample_state("r3"))
    result = cli("export", "r3", "r1", store=store)
    assert [json.loads(line)["run_id"] for line in result.out.splitlines()] == ["r3", "r1"]
    result = cli("export", "--status", "failed", store=store)
    assert [json.loads(line)["run_id"] for line in result.out.splitlines()] == ["r2"]
    result = cli("export", "r1", "nope", store=store)
    assert result.code == EXIT_NOT_FOUND and "no run 'nope'" in result.err
    assert len(result.out.splitlines()) == 1


def test_export_keeps_earlier_flujo_records_as_they_are(cli: Any, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    source = make_store("file", tmp_path, request, "source")
    source.put_raw("old-1", json.dumps(LEGACY).encode())
    line = cli("export", store=source).out.strip()
    assert json.loads(line) == LEGACY
    target = make_store("sqlite", tmp_path, request, "target")
    dump = tmp_path / "old.jsonl"
    dump.write_text(line + "\n")
    assert cli("import", str(dump), store=target).code == EXIT_OK
    record = target.record("old-1")
    assert record is not None and record.state.pipeline_context == {"n": 1}


def test_import_refuses_existing_runs_unless_overwrite(store: Store, cli: Any,
                                                       tmp_path: Path) -> None:
    store.save(sample_state("r1"), sample_state("r2"))
    dump = tmp_path / "runs.jsonl"
    assert cli("export", "--out", str(dump), store=store).code == EXIT_OK
    store.save(sample_state("r1", status="failed", error="changed since"))
    assert cli("delete", "--yes", "r2", store=store).code == EXIT_OK

    result = cli("import", str(dump), store=store)
    assert result.code == EXIT_NOT_FOUND
    assert "refused (already in the store): r1" in result.err
    assert "imported 1 run(s), 1 already in the store" in result.err
    record = store.record("r1")
    assert record is not None and record.state.error == "changed since"
    assert store.record("r2") is not None

    result = cli("import", str(dump), "--overwrite", store=store)
    assert result.code == EXIT_OK, result.err
    record = store.record("r1")
    assert record is not None and record.state.error is None and record.revision == 3


def test_import_dry_run_writes_nothing(cli: Any, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    source = make_store("file", tmp_path, request, "source")
    source.save(sample_state("r1"), sample_state("r2"))
    dump = tmp_path / "runs.jsonl"
    cli("export", "--out", str(dump), store=source)
    target = make_store("sqlite", tmp_path, request, "target")
    target.save(sample_state("r2"))
    result = cli("import", str(dump), "--dry-run", store=target)
    assert result.code == EXIT_NOT_FOUND
    assert "would import 1 run(s), 1 already in the store" in result.err
    assert target.ids() == ["r2"]
    result = cli("import", str(dump), "--dry-run", "--overwrite", store=target)
    assert result.code == EXIT_OK and "would import 2 run(s)" in result.err


@pytest.mark.parametrize(("line", "code"), [
    (b"{not json", EXIT_CORRUPT),
    (b'{"format": "flujo.state"}', EXIT_CORRUPT),
    (b'{"format": "flujo.state", "envelope_version": 9}', EXIT_ERROR),  # newer flujo
])
def test_import_stops_at_a_damaged_line(line: bytes, code: int, cli: Any, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    source = make_store("sqlite", tmp_path, request, "source")
    source.save(sample_state("r1"), sample_state("r2"))
    good = cli("export", store=source).out.encode().splitlines()
    dump = tmp_path / "runs.jsonl"
    dump.write_bytes(b"\n".join([good[0], b"", line, good[1]]) + b"\n")
    target = make_store("file", tmp_path, request, "target")
    result = cli("import", str(dump), store=target)
    assert result.code == code, result.err
    assert "runs.jsonl line 3" in result.err
    assert "the 1 run(s) before this line were imported" in result.err
    assert len(target.ids()) == 1


def test_missing_import_file_is_a_usage_error(cli: Any, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    store = make_store("file", tmp_path, request)
    result = cli("import", str(tmp_path / "nope.jsonl"), store=store)
    assert result.code == EXIT_USAGE and "cannot read" in result.err


def test_encrypted_runs_move_without_the_key_and_read_with_it(
        cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = Encryption.generate_key()
    encryption = Encryption.single(key, "k1")
    monkeypatch.setenv("TEST_FLUJO_KEY", "k1:" + base64.b64encode(key).decode())
    source = make_store("sqlite", tmp_path, request, "source")
    source.save(sample_state("r1"), encryption=encryption)
    result = cli("show", "r1", store=source)
    assert result.code == EXIT_ERROR and "EncryptionError" in result.err
    assert "--key-env" in result.err
    ls = cli("ls", "--no-header", store=source)
    assert ls.code == EXIT_OK and tsv(ls.out)[0][3] == "locked"

    exported = tmp_path / "secret.jsonl"
    assert cli("export", "--out", str(exported), store=source).code == EXIT_OK  # no key needed
    assert b"ACME" not in exported.read_bytes()
    target = make_store("file", tmp_path, request, "target")
    assert cli("import", str(exported), store=target).code == EXIT_OK
    result = cli("show", "r1", "--key-env", "TEST_FLUJO_KEY", store=target)
    assert result.code == EXIT_OK and "Decimal('10.90')" in result.out
    assert_same_runs(source, target, ["r1"], encryption=encryption)

    plain = make_store("file", tmp_path, request, "plain")
    plain.save(sample_state("p1"))
    plain_dump = tmp_path / "plain.jsonl"
    cli("export", "--out", str(plain_dump), store=plain)
    result = cli("import", str(plain_dump), "--key-env", "TEST_FLUJO_KEY", store=target)
    assert result.code == EXIT_ERROR and "plaintext" in result.err


@pytest.mark.parametrize("value", ["no-colon", "k1:not base64!", "k1:" + "QUJD"])
def test_bad_key_env_is_a_usage_error(value: str, cli: Any, tmp_path: Path,
                                      request: pytest.FixtureRequest,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store("file", tmp_path, request)
    monkeypatch.setenv("TEST_FLUJO_KEY", value)
    result = cli("ls", "--key-env", "TEST_FLUJO_KEY", store=store)
    assert result.code == EXIT_USAGE
    assert cli("ls", "--key-env", "TEST_FLUJO_UNSET_VAR", store=store).code == EXIT_USAGE
    assert cli("ls", "--accept-plaintext", store=store).code == EXIT_USAGE
    assert cli("ls", "--store-name", "orders", store=store).code == EXIT_USAGE
    assert cli("ls", "--accept-unbound", store=store).code == EXIT_USAGE
    monkeypatch.setenv("TEST_FLUJO_GOOD_KEY", "k1:" + base64.b64encode(bytes(32)).decode())
    result = cli("ls", "--key-env", "TEST_FLUJO_GOOD_KEY", "--accept-unbound", store=store)
    assert result.code == EXIT_USAGE and "store's name" in result.err


# -- migrate -----------------------------------------------------------------------------------


def test_migrate_rewrites_records_to_what_the_options_say(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"), sample_state("r2"))
    result = cli("migrate", "--dry-run", "--compression", "zlib", store=store)
    assert result.code == EXIT_OK, result.err
    assert [row[0] for row in tsv(result.out)] == ["r1", "r2"]
    assert tsv(result.out)[0][1:] == ["1", "-", "codec json -> json+zlib"]
    assert "would rewrite 2" in result.err
    assert store.codec_of("r1") == "json"
    assert cli("migrate", "--check", "--compression", "zlib", store=store).code == EXIT_NOT_FOUND

    result = cli("migrate", "--compression", "zlib", store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out)[0] == ["r1", "1", "2", "codec json -> json+zlib"]
    assert "rewrote 2" in result.err
    assert store.codec_of("r1") == "json+zlib"
    record = store.record("r1")
    assert record is not None
    assert_identical(record.state.pipeline_context, sample_state("r1").pipeline_context)
    assert cli("migrate", "--check", "--compression", "zlib", store=store).code == EXIT_OK

    # Without --compression the records would silently lose it: refused.
    result = cli("migrate", store=store)
    assert result.code == EXIT_USAGE and "--compression none" in result.err
    assert store.codec_of("r1") == "json+zlib"
    assert cli("migrate", "--compression", "none", store=store).code == EXIT_OK
    assert store.codec_of("r2") == "json"


def test_migrate_to_a_compressor_a_module_registers(store: Store, cli: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name, module = f"xz{uuid.uuid4().hex[:8]}", f"stages_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""\
        import lzma
        from flujo.state import register_compressor

        class Xz:
            name = {name!r}

            def compress(self, data):
                return lzma.compress(data)

            def decompress(self, data, limit):
                return lzma.LZMADecompressor().decompress(data, max_length=limit + 1)

        register_compressor(Xz())
        """))
    monkeypatch.chdir(tmp_path)
    store.save(sample_state("r1"))
    result = cli("migrate", "--compression", name, store=store)
    assert result.code == EXIT_USAGE and "register_compressor" in result.err
    result = cli("migrate", "--module", module, "--compression", name, store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out)[0] == ["r1", "1", "2", f"codec json -> json+{name}"]
    assert store.codec_of("r1") == f"json+{name}"
    # Leaving it for none is a change of compression: asked for, never implied.
    result = cli("migrate", "--module", module, store=store)
    assert result.code == EXIT_USAGE and "--compression none" in result.err
    assert store.codec_of("r1") == f"json+{name}"


def test_migrate_brings_earlier_flujo_records_up_to_date(cli: Any, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    store = make_store("file", tmp_path, request)
    store.put_raw("old-1", json.dumps(LEGACY).encode())
    store.save(sample_state("new"))
    result = cli("migrate", store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out) == [["old-1", "1", "2", "envelope format 0 -> 2"]]
    assert "1 up to date, rewrote 1" in result.err
    assert json.loads(store.get_raw("old-1"))["envelope_version"] == 2


def test_migrate_stops_before_rewriting_anything_when_a_run_fails(
        local_store: Store, cli: Any) -> None:
    store = local_store
    for run_id in ("a-old", "c-old"):
        store.put_raw(run_id, json.dumps({**LEGACY, "run_id": run_id}).encode())
    store.put_raw("b-bad", DAMAGED)
    before = {run_id: store.get_raw(run_id) for run_id in ("a-old", "b-bad", "c-old")}

    result = cli("migrate", store=store)
    assert result.code == EXIT_CORRUPT, result.err
    assert "FAILED b-bad: CorruptStateError" in result.err
    assert "nothing was rewritten" in result.err
    assert {run_id: store.get_raw(run_id) for run_id in before} == before

    result = cli("migrate", "--dry-run", store=store)  # a dry run reports everything
    assert result.code == EXIT_CORRUPT
    assert [row[0] for row in tsv(result.out)] == ["a-old", "c-old"]


def test_migrate_without_the_key_fails_untouched(cli: Any, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), encryption=Encryption.single(Encryption.generate_key()))
    raw = store.get_raw("r1")
    result = cli("migrate", "--compression", "zlib", store=store)
    assert result.code == EXIT_ERROR
    assert "EncryptionError" in result.err and "--key-env" in result.err
    assert store.get_raw("r1") == raw


def test_migrate_encrypts_a_store_with_accept_plaintext(cli: Any, tmp_path: Path,
                                                        request: pytest.FixtureRequest,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = Encryption.generate_key()
    monkeypatch.setenv("TEST_FLUJO_KEY", "k1:" + base64.b64encode(key).decode())
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"))
    result = cli("migrate", "--key-env", "TEST_FLUJO_KEY", "--accept-plaintext", store=store)
    assert result.code == EXIT_OK, result.err
    assert store.codec_of("r1") == "json+aesgcm"
    assert b"ACME" not in store.get_raw("r1")


def test_migrate_binds_an_encrypted_store_to_its_name(cli: Any, tmp_path: Path,
                                                      request: pytest.FixtureRequest,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key = Encryption.generate_key()
    monkeypatch.setenv("TEST_FLUJO_KEY", "k1:" + base64.b64encode(key).decode())
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), encryption=Encryption.single(key, "k1"))
    named = ["--key-env", "TEST_FLUJO_KEY", "--store-name", "orders-prod"]
    result = cli("show", "r1", *named, store=store)
    assert result.code == EXIT_ERROR and "authentication" in result.err
    assert "--accept-unbound" in result.err
    result = cli("migrate", *named, "--accept-unbound", store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out) == [["r1", "1", "2", "bound to store 'orders-prod'"]]
    assert cli("show", "r1", *named, store=store).code == EXIT_OK
    result = cli("show", "r1", "--key-env", "TEST_FLUJO_KEY", store=store)
    assert result.code == EXIT_ERROR and "authentication" in result.err


def test_migrate_rotates_keys_and_keeps_compression_only_when_told(
        cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Encryption.generate_key(), Encryption.generate_key()
    monkeypatch.setenv("TEST_KEY_OLD", "2024-06:" + base64.b64encode(old).decode())
    monkeypatch.setenv("TEST_KEY_NEW", "2024-12:" + base64.b64encode(new).decode())
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), compression="zlib",
               encryption=Encryption.single(old, "2024-06"))
    keys = ["--key-env", "TEST_KEY_NEW", "--key-env", "TEST_KEY_OLD"]

    result = cli("migrate", "--dry-run", *keys, store=store)
    assert result.code == EXIT_OK
    assert "codec json+zlib+aesgcm -> json+aesgcm" in result.out
    assert "would change their compression" in result.err
    result = cli("migrate", *keys, store=store)
    assert result.code == EXIT_USAGE and "--compression" in result.err
    assert store.codec_of("r1") == "json+zlib+aesgcm"

    result = cli("migrate", *keys, "--compression", "zlib", store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out) == [["r1", "1", "2", "key 2024-06 -> 2024-12"]]
    record = store.record("r1", encryption=Encryption.single(new, "2024-12"))
    assert record is not None and record.envelope.key_id == "2024-12"
    assert_identical(record.state.pipeline_context, sample_state("r1").pipeline_context)


def test_migrate_reports_progress_and_stops_at_the_first_failure_when_supported(
        cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a migrate_all that takes progress= and stop_on_failure=, the CLI passes them."""
    calls: list[dict[str, Any]] = []
    ticks: list[tuple[int, int]] = []

    async def extended(backend: Any, *, dry_run: bool = False, stop_on_failure: bool = False,
                       progress: Any = None, report: Any = None) -> MigrationReport:
        calls.append({"dry_run": dry_run, "stop_on_failure": stop_on_failure})
        report = await migrate_all(backend, dry_run=dry_run, report=report)
        for done in range(1, report.scanned + 1):
            progress(done, report.scanned)
            ticks.append((done, report.scanned))
        if not dry_run:  # a worker saved r2 in between: the write pass stops there
            report.changed = report.changed[:1]
            report.failed = [MigrationFailure("r2", StateConflictError("r2 changed"))]
            report.skipped = ["r3"]  # type: ignore[attr-defined]
        return report

    monkeypatch.setattr(_state_write, "migrate_all", extended)
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), sample_state("r2"), sample_state("r3"))
    result = cli("migrate", "--compression", "zlib", store=store)
    assert result.code == EXIT_ERROR
    assert calls == [{"dry_run": True, "stop_on_failure": False},
                     {"dry_run": False, "stop_on_failure": True}]
    assert ticks == [(1, 3), (2, 3), (3, 3)] * 2
    assert "FAILED r2: StateConflictError: r2 changed" in result.err
    assert "stopped at the first failure, 1 run(s) not examined" in result.err


def test_an_interrupted_migrate_says_which_runs_it_rewrote(
        cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(backend: Any, **options: Any) -> MigrationReport:
        def stop_after_the_first(done: int, total: int) -> None:
            if not options["dry_run"]:
                raise KeyboardInterrupt  # Ctrl-C while the second run is next
        return await migrate_all(backend, **{**options, "progress": stop_after_the_first})

    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"), sample_state("r2"), sample_state("r3"))
    monkeypatch.setattr(_state_write, "migrate_all", interrupted)
    result = cli("migrate", "--compression", "zlib", store=store)
    assert result.code == 130, result.err
    assert [row[0] for row in tsv(result.out)] == ["r1"]
    assert "interrupted: 1 run(s) rewritten before it stopped (listed above)" in result.err
    monkeypatch.setattr(_state_write, "migrate_all", migrate_all)
    again = cli("migrate", "--compression", "zlib", "--dry-run", store=store)
    assert sorted(row[0] for row in tsv(again.out)) == ["r2", "r3"]
    done = cli("migrate", "--compression", "zlib", store=store)
    assert done.code == EXIT_OK
    nothing = cli("migrate", "--compression", "zlib", store=store)
    assert (nothing.code, nothing.out) == (EXIT_OK, "")
    assert "scanned 3 run(s): all up to date, nothing to rewrite" in nothing.err
    assert "would" not in nothing.err


def test_migrate_all_refuses_a_used_report(tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"))
    for used in (MigrationReport(dry_run=True, scanned=1), MigrationReport(dry_run=False)):
        with pytest.raises(BackendConfigError, match="takes a new MigrationReport"):
            store.run(lambda backend, used=used: migrate_all(backend, dry_run=True, report=used))
    report = MigrationReport(dry_run=True)
    assert store.run(lambda backend: migrate_all(backend, dry_run=True, report=report)) is report
    assert report.scanned == 1


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_output, "_is_tty", lambda stream: True)
    with _output._Progress("checking", None) as bar:
        assert bar._bar is not None
        bar.update(1, 4)
        bar.advance()
        assert bar._bar.tasks[0].completed == 2 and bar._bar.tasks[0].total == 4
        assert any(type(c).__name__ == "MofNCompleteColumn" for c in bar._bar.columns)
    with _output._Progress("importing", 3_000_000, in_bytes=True) as bar:
        bar.advance(1_500_000)
        [column] = [c for c in bar._bar.columns if type(c).__name__ == "DownloadColumn"]
        assert "/3.0 MB" in str(column.render(bar._bar.tasks[0]))
    monkeypatch.setattr(_output, "_is_tty", lambda stream: False)
    with _output._Progress("checking", 3) as bar:
        assert bar._bar is None
        bar.advance()
    assert capsys.readouterr().err.strip() == ""


# -- delete ------------------------------------------------------------------------------------


def test_delete_needs_yes_without_a_terminal_and_reports_each_run(
        store: Store, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(sample_state("r1"), sample_state("r2"), sample_state("r3"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    result = cli("delete", "r1", store=store)
    assert result.code == EXIT_USAGE and "--yes" in result.err  # stdin is not a terminal
    assert sorted(store.ids()) == ["r1", "r2", "r3"]

    result = cli("delete", "--yes", "r1", "nope", "r3", store=store)
    assert result.code == EXIT_NOT_FOUND
    assert tsv(result.out) == [["deleted", "r1"], ["deleted", "r3"]]
    assert "no run 'nope'" in result.err
    assert store.ids() == ["r2"]


def test_delete_asks_on_a_terminal(cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store("file", tmp_path, request)
    store.save(sample_state("r1"))
    monkeypatch.setattr(_output, "_is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert cli("delete", "r1", store=store).code == EXIT_NOT_FOUND
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # Ctrl-D: end of input, a no
    result = cli("delete", "r1", store=store)
    assert (result.code, result.err.strip()) == (EXIT_NOT_FOUND, "flujo state: nothing deleted")
    assert store.ids() == ["r1"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert cli("delete", "r1", store=store).code == EXIT_OK
    assert store.ids() == []


# -- damaged records ---------------------------------------------------------------------------


def test_damaged_record(store: Store, cli: Any) -> None:
    store.save(sample_state("r1"))
    store.put_raw("bad", DAMAGED)

    result = cli("show", "bad", store=store)
    assert result.code == EXIT_CORRUPT
    assert "CorruptStateError" in result.err and "left exactly as it was found" in result.err
    assert cli("show", "bad", "--raw", store=store).code == EXIT_CORRUPT

    result = cli("ls", "--no-header", store=store)
    assert result.code == EXIT_CORRUPT
    assert "r1" in [row[0] for row in tsv(result.out)]
    assert "damaged record 'bad'" in result.err

    result = cli("export", store=store)
    assert result.code == EXIT_CORRUPT and "--skip-damaged" in result.err
    result = cli("export", "--skip-damaged", store=store)
    assert result.code == EXIT_OK
    assert [json.loads(line)["run_id"] for line in result.out.splitlines()] == ["r1"]
    assert "skipped damaged record 'bad'" in result.err

    assert store.get_raw("bad") == DAMAGED  # still there, as it was
    assert cli("delete", "--yes", "bad", store=store).code == EXIT_OK  # can be removed
    assert store.ids() == ["r1"]


def test_failed_export_leaves_no_file(cli: Any, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    store = make_store("file", tmp_path, request)
    store.save(sample_state("r1"))
    store.put_raw("r2", DAMAGED)
    dump = tmp_path / "backup.jsonl"
    assert cli("export", "--out", str(dump), store=store).code == EXIT_CORRUPT
    assert not dump.exists() and not (tmp_path / ".backup.jsonl.partial").exists()


def test_export_file_is_private_and_replaces_the_target(cli: Any, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    # was: 0644 (the umask's), while the stores' own files are 0600
    store = make_store("file", tmp_path, request)
    store.save(sample_state("r1"))
    dump = tmp_path / "backup.jsonl"
    dump.write_text("yesterday's\n")
    dump.chmod(0o644)
    assert cli("export", "--out", str(dump), store=store).code == EXIT_OK
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert [json.loads(line)["run_id"] for line in dump.read_text().splitlines()] == ["r1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-runs", "backup.jsonl"]


@pytest.mark.parametrize("planted", ["link to a file", "dangling link", "file", "directory"])
def test_export_never_writes_through_a_planted_partial_file(
        planted: str, cli: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # was: open(".FILE.partial", "wb") followed a planted link and overwrote its target
    store = make_store("file", tmp_path, request)
    store.save(sample_state("r1"))
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("victim")
    dump = tmp_path / "backup.jsonl"
    partial = tmp_path / ".backup.jsonl.partial"
    if planted == "link to a file":
        partial.symlink_to(victim)
    elif planted == "dangling link":
        partial.symlink_to(outside / "created")
    elif planted == "file":
        partial.write_text("another export's")
    else:
        partial.mkdir()
    result = cli("export", "--out", str(dump), store=store)
    assert result.code == EXIT_USAGE
    assert f"{partial} already exists" in result.err and "left as it is" in result.err
    assert not dump.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert victim.read_text() == "victim"
    if planted == "file":
        assert partial.read_text() == "another export's"
    assert partial.is_symlink() == ("link" in planted)  # still there, as it was


def test_export_to_a_path_that_names_no_file_is_a_usage_error(cli: Any, tmp_path: Path,
                                                              request: pytest.FixtureRequest
                                                              ) -> None:
    store = make_store("file", tmp_path, request)
    store.save(sample_state("r1"))
    for out in (str(tmp_path / ".."), str(tmp_path / "missing" / "backup.jsonl")):
        result = cli("export", "--out", out, store=store)
        assert result.code == EXIT_USAGE and "cannot write" in result.err
    assert cli("export", "--out", str(tmp_path), store=store).code == EXIT_USAGE  # a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-runs"]


# -- stores that cannot be used ----------------------------------------------------------------


@pytest.mark.parametrize("uri", ["state.db", "sqlxx:///state.db", "memory://x", "sqlite://rel.db",
                                 "file://", "sqlite:///"])
def test_bad_uri_is_a_usage_error(uri: str, cli: Any) -> None:
    result = cli("ls", "--store", uri)
    assert result.code == EXIT_USAGE, result.err
    assert "bad store URI" in result.err


def test_options_that_do_not_fit_the_store(cli: Any, tmp_path: Path) -> None:
    result = cli("ls", "--store", f"file://{tmp_path}", "--table", "t")
    assert result.code == EXIT_USAGE and "--table" in result.err
    result = cli("ls", "--store", f"sqlite:///{tmp_path}/x.db", "--pg-schema", "s")
    assert result.code == EXIT_USAGE and "--pg-schema" in result.err
    (tmp_path / "x.db").touch()
    result = cli("ls", "--store", f"sqlite:///{tmp_path}/x.db", "--table", "bad name")
    assert result.code == EXIT_USAGE and "table name" in result.err


def test_store_from_the_environment(cli: Any, tmp_path: Path, request: pytest.FixtureRequest,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)
    result = cli("ls")
    assert result.code == EXIT_USAGE and "FLUJO_STATE_URI" in result.err
    store = make_store("sqlite", tmp_path, request)
    store.save(sample_state("r1"))
    monkeypatch.setenv("FLUJO_STATE_URI", store.uri)
    result = cli("ls", "--no-header")
    assert result.code == EXIT_OK and tsv(result.out)[0][0] == "r1"


def test_missing_store_is_unreachable_and_not_created(cli: Any, tmp_path: Path) -> None:
    for uri in (f"sqlite:///{tmp_path}/missing.db", f"file://{tmp_path}/missing-dir"):
        for command in (["ls"], ["show", "r1"], ["export"], ["migrate"], ["delete", "-y", "r1"]):
            result = cli(*command, "--store", uri)
            assert result.code == EXIT_UNAVAILABLE, (uri, command, result.err)
            assert "BackendUnavailableError" in result.err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_is_unreachable(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("hello, I am not SQLite " * 100)
    result = cli("ls", "--store", f"sqlite:///{tmp_path}/notes.db")
    assert result.code == EXIT_UNAVAILABLE and "BackendUnavailableError" in result.err


def test_unreachable_postgres(cli: Any) -> None:
    pytest.importorskip("psycopg")
    started = dt.datetime.now()
    result = cli("ls", "--store", "postgresql://flujo:secret@127.0.0.1:9/nothing",
                 "--connect-timeout", "1")
    assert result.code == EXIT_UNAVAILABLE, result.err
    assert "BackendUnavailableError" in result.err
    assert "secret" not in result.err
    assert (dt.datetime.now() - started).total_seconds() < 30


# -- application types -------------------------------------------------------------------------


def test_module_option_registers_the_applications_types(cli: Any, tmp_path: Path,
                                                        request: pytest.FixtureRequest,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"cli_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""
        from decimal import Decimal
        from flujo.serialization import register_custom_serializer

        class Money:
            def __init__(self, amount, currency):
                self.amount, self.currency = amount, currency
            def __repr__(self):
                return f"Money({{self.amount}} {{self.currency}})"

        register_custom_serializer(
            Money, lambda m: [str(m.amount), m.currency],
            deserializer=lambda v: Money(Decimal(v[0]), v[1]), name="{module}.money")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    writer_registry = TypeRegistry()  # the application's process, simulated

    class Money:
        def __init__(self, amount: Decimal, currency: str) -> None:
            self.amount, self.currency = amount, currency

    writer_registry.register_custom_serializer(
        Money, lambda m: [str(m.amount), m.currency],
        deserializer=lambda v: Money(Decimal(v[0]), v[1]), name=f"{module}.money")
    store = make_store("file", tmp_path, request)
    store.save(WorkflowState(run_id="r1", pipeline_context={"price": Money(Decimal("9.90"),
                                                                           "EUR")}),
               registry=writer_registry)

    result = cli("show", "r1", store=store)
    assert result.code == EXIT_CORRUPT
    assert "UnknownTypeError" in result.err and "--module" in result.err
    result = cli("show", "r1", "--module", module, store=store)
    assert result.code == EXIT_OK, result.err
    assert "Money(9.90 EUR)" in result.out

    result = cli("show", "r1", "--module", "no_such_module_here", store=store)
    assert result.code == EXIT_USAGE and "cannot import module" in result.err


def test_modules_from_pyproject(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\nmodules = ["no_such_module_x"]\n')
    result = cli("ls", "--store", f"file://{tmp_path}")
    assert result.code == EXIT_USAGE and "no_such_module_x" in result.err
    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\nmodules = "not a list"\n')
    assert cli("ls", "--store", f"file://{tmp_path}").code == EXIT_USAGE


# -- what reaches the operator's terminal (issue 14) -------------------------------------------

#: Stored text aimed at the operator's terminal: rich markup that crashes (``[/bold]``) or
#: makes a hyperlink, OSC 52 (writes the clipboard), CSI (clears the screen), a C1 CSI, DEL,
#: a bidi override.
HOSTILE = ("[/bold]\x1b]52;c;aGk=\x07[link=https://evil.example]x[/link]\x1b[2J\x9b2J\x7f"
           "\u202eevil")
HOSTILE_RUN = "r\u202eevil"  # a valid run id (bidi characters are not control characters)
SRC = Path(flujo.__file__).resolve().parents[1]
_SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's colours, the only escapes expected


def hostile_state() -> WorkflowState:
    return WorkflowState(
        run_id=HOSTILE_RUN, pipeline_name=HOSTILE, pipeline_version=HOSTILE, status="failed",
        error=HOSTILE, current_step_index=1, step_names=["fetch", HOSTILE],
        pipeline_context={HOSTILE: [HOSTILE, {HOSTILE}], "big": 2**20000, "n": 2**80})


def flujo_process(*argv: str, terminal: bool) -> tuple[int, bytes, bytes]:
    """Run ``python -m flujo.cli ARGV``: the exact bytes it writes to stdout (a pipe, or a
    pseudo-terminal, where rich draws its tables) and stderr."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "xterm-256color", "COLUMNS": "400"}
    env.pop("NO_COLOR", None)
    command = [sys.executable, "-m", "flujo.cli", *argv]
    if not terminal:
        proc = subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave,
                                 stderr=subprocess.PIPE, env=env)
    finally:
        os.close(slave)
    out = bytearray()
    try:
        while select.select([master], [], [], 120)[0]:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert child.stderr is not None
    err = child.stderr.read()
    child.stderr.close()
    return child.wait(timeout=120), bytes(out), err


def assert_inert(data: bytes) -> None:
    """Nothing in ``data`` can act on a terminal: no ESC but rich's colours, no BEL, no
    other control, bidi or format character (no OSC 52, no OSC 8 hyperlink, no CSI)."""
    text = _SGR.sub(b"", data).decode("utf-8")
    acting = sorted({char for char in text if char not in "\t\r\n"
                     and unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    assert acting == [], f"{acting} in {text[:2000]!r}"
    assert "\x1b]8;" not in text and "evil.example\x1b" not in text


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("argv", [["ls"], ["ls", "--format", "json"], ["show", HOSTILE_RUN],
                                  ["show", HOSTILE_RUN, "--json"],
                                  ["show", HOSTILE_RUN, "--raw"]],
                         ids=["ls", "ls-json", "show", "show-json", "show-raw"])
def test_stored_text_reaches_the_terminal_escaped(argv: list[str], terminal: bool,
                                                  tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    # was: `ls` and `show` crashed on a terminal (rich MarkupError on "[/bold]"), or wrote
    # the ESC, BEL, C1 and bidi characters as they were (OSC 52, CSI, hyperlinks)
    store = make_store("sqlite", tmp_path, request)
    store.save(hostile_state())
    code, out, err = flujo_process("state", *argv, "--store", store.uri, terminal=terminal)
    assert code == EXIT_OK, err.decode(errors="replace")
    assert_inert(out)
    assert_inert(err)
    text = _SGR.sub(b"", out).decode()
    if argv[-1] in ("--json", "--raw") or "json" in argv:  # JSON: the same data, escaped
        assert "[/bold]\\u001b]52;c;aGk=\\u0007[link=" in text
        assert "\\u009b2J\\u007f\\u202eevil" in text
        documents = [json.loads(line) for line in text.splitlines()] if "ls" in argv else [
            json.loads(text)]
        assert documents[0]["pipeline_name"] == HOSTILE
    else:  # text: each character shown as an escape
        assert "[/bold]\\x1b]52;c;aGk=\\x07[link=https://evil.example]x[/link]" in text
        assert "\\x9b2J\\x7f\\u202eevil" in text


def test_messages_on_stderr_show_stored_text_escaped(cli: Any, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    source = make_store("sqlite", tmp_path, request)
    source.save(hostile_state())
    dump = tmp_path / "runs.jsonl"
    assert cli("export", "--out", str(dump), store=source).code == EXIT_OK
    result = cli("import", str(dump), store=source)  # refused: the run is in the store
    assert result.code == EXIT_NOT_FOUND
    assert "refused (already in the store): r\\u202eevil" in result.err
    assert_inert(result.err.encode())

    result = cli("ls", "--format", "tsv", "--no-header", store=source)
    assert result.out.split("\t")[0] == "r\\u202eevil"  # one cell, no raw bidi override
    assert_inert(result.out.encode())


def test_a_state_with_an_int_too_long_for_decimal_digits_is_shown(
        cli: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # was: ValueError "Exceeds the limit (4300 digits) for integer string conversion" from
    # `show` and `show --json` (a legitimately stored 2**20000)
    big, huge = 2**20000, -(3**300_000)  # 6,021 digits; 475,489 bits
    store = make_store("sqlite", tmp_path, request)
    store.save(WorkflowState(run_id="r1", pipeline_context={
        "big": big, "huge": huge, "n": 2**80, "in_model": Tally(n=big), "in_set": {big},
        "in_dataclass": Cell(big)}))
    result = cli("show", "r1", store=store)
    assert result.code == EXIT_OK, result.err
    shown = f"<int with 6021 digits: {big // 10**6013}…{big % 10**8:08d}>"
    assert shown == "<int with 6021 digits: 39802768…06309376>"
    assert f"'big': {shown}" in result.out
    assert f"'in_model': Tally(n={shown})" in result.out
    assert f"'in_set': {{{shown}}}" in result.out
    assert f"'in_dataclass': Cell(value={shown})" in result.out
    assert f"'huge': <int of 475489 bits: -0x{-huge >> 475457:x}…" in result.out
    assert f"'n': {2**80}" in result.out

    result = cli("show", "r1", "--json", store=store)
    assert result.code == EXIT_OK, result.err
    context = json.loads(result.out)["pipeline_context"]
    assert context["big"] == {"$t": "int@1", "v": hex(big)}  # as flujo stores it: lossless
    assert context["huge"] == {"$t": "int@1", "v": hex(huge)}
    assert context["in_model"] == {"n": {"$t": "int@1", "v": hex(big)}}
    assert context["n"] == 2**80  # JSON numbers while they have at most 4,300 digits
    raw = json.loads(cli("show", "r1", "--raw", store=store).out)
    assert raw["payload"]["fields"]["pipeline_context"]["big"] == {"$t": "int@1", "v": hex(big)}


# -- help and helpers --------------------------------------------------------------------------


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["state", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("ls", "show", "export", "import", "migrate", "delete", "FLUJO_STATE_URI"):
        assert text in out
    for code, meaning in EXIT_CODES.items():
        assert f"  {code}  {meaning}" in out


def test_missing_subcommand_is_an_argparse_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["state"])
    assert exit_info.value.code == EXIT_USAGE


def test_redact_uri() -> None:
    assert redact_uri("postgresql://app:s3cret@db:5432/app") == "postgresql://app:***@db:5432/app"
    assert redact_uri("postgresql://db/app?user=a&password=x&sslmode=require") == (
        "postgresql://db/app?user=a&password=***&sslmode=require")
    assert redact_uri("sqlite:///state.db") == "sqlite:///state.db"

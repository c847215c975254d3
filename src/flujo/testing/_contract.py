"""The contract test suite every state backend must pass (needs pytest and pytest-asyncio).

Subclass ``BackendContract`` in a test module, name the subclass ``Test...`` and
implement ``make_backend``; optionally implement
``get_raw`` / ``put_raw`` to also run the tests
that damage stored records::

    from flujo.testing import BackendContract

    class TestMyBackend(BackendContract):
        async def make_backend(self, tmp_path, **options):
            return MyBackend(tmp_path / uuid.uuid4().hex, **options)

A backend that keeps checkpoint history also implements
``put_kept_raw`` to run the damaged-history tests.

``make_backend`` must return a backend on fresh, empty storage each time it is called and
pass ``options`` (``compression=``, ``encryption=``, ``migrations=``, ``registry=``,
``max_payload_bytes=``) to the backend's constructor.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import os
import socket
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    EncryptionError,
    FutureVersionError,
    InvalidRunIdError,
    InvalidStateError,
    MissingMigrationError,
    PayloadTooLargeError,
    RunInProgressError,
    SerializationError,
    StateConflictError,
    UnserializableTypeError,
)
from flujo.state import (
    Encryption,
    EnvelopeCodec,
    StateBackend,
    StateMigrations,
    WorkflowState,
)

from ._compare import assert_identical
from ._contract_history import HistoryContract
from ._contract_stages import StagesContract
from ._samples import BAD_RUN_IDS, NoSerializer, sample_values

__all__ = ["BAD_RUN_IDS", "BackendContract", "sample_values"]


def dumps(data: Any) -> bytes:
    """A stored record's JSON text, written without any of flujo's checks."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False).encode()


def loads(raw: bytes) -> Any:
    """A stored record's data, read without any of flujo's checks."""
    return json.loads(raw)


#: A store small enough that its limits are quick to exceed (max_containers is 2**20).
_BOUNDED = 4 * 1024 * 1024


def _codec_of(backend: StateBackend) -> EnvelopeCodec:
    codec = getattr(backend, "codec", None)
    assert isinstance(codec, EnvelopeCodec), f"{type(backend).__name__} has no EnvelopeCodec"
    return codec


def _record(run_id: str, payload: bytes, codec: str = "json") -> bytes:
    """A stored record of ``run_id`` around ``payload`` (its JSON), bypassing every check."""
    return (b'{"format":"flujo.state","envelope_version":1,"run_id":"' + run_id.encode()
            + b'","revision":1,"state_version":1,"manifest":{},"pipeline_name":"",'
            b'"status":"running","created_at":"2024-01-01T00:00:00.000000+00:00",'
            b'"updated_at":"2024-01-01T00:00:00.000000+00:00","codec":"' + codec.encode()
            + b'","key_id":null,"payload":' + payload + b"}")


def _state(run_id: str, **fields: Any) -> WorkflowState:
    return WorkflowState(
        run_id=run_id, pipeline_name=fields.pop("pipeline_name", "contract"), **fields
    )


class BackendContract(HistoryContract, StagesContract):
    """Behaviour every backend must have. See the module docstring for how to use it."""

    pytestmark = pytest.mark.asyncio

    # -- hooks -----------------------------------------------------------------------------

    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        raise NotImplementedError

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        """The stored bytes of ``run_id`` (override to enable the damaged-record tests)."""
        pytest.skip(f"{type(self).__name__} gives no raw access to stored records")

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        """Store ``raw`` as ``run_id``'s record, bypassing every check."""
        pytest.skip(f"{type(self).__name__} gives no raw access to stored records")

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[StateBackend]:
        backend = await self.make_backend(tmp_path)
        try:
            yield backend
        finally:
            await backend.close()

    # -- basic contract --------------------------------------------------------------------

    async def test_missing_run_loads_none(self, backend: StateBackend) -> None:
        assert await backend.load_state("nope") is None
        assert await backend.load_record("nope") is None
        assert await backend.read_envelope("nope") is None

    async def test_round_trip_every_supported_type(self, backend: StateBackend) -> None:
        values = sample_values()
        state = _state(
            "types",
            pipeline_context=values,
            last_step_output=values["model"],
            step_history=[values["dataclass"], {"step": 1}],
            current_step_index=3,
            status="paused",
            error="boom",
        )
        assert await backend.save_state("types", state) == 1
        loaded = await backend.load_state("types")
        assert loaded is not None
        assert_identical(loaded["pipeline_context"], values)
        assert_identical(loaded["last_step_output"], values["model"])
        assert_identical(loaded["step_history"], state.step_history)
        assert (loaded["current_step_index"], loaded["status"], loaded["error"]) == (
            3,
            "paused",
            "boom",
        )
        # The store owns the timestamps: load_state and list_runs say the same.
        [row] = [r for r in await backend.list_runs() if r["run_id"] == "types"]
        assert (loaded["created_at"], loaded["updated_at"]) == (
            row["created_at"], row["updated_at"])

    async def test_round_trip_shared_objects_and_cycles(self, backend: StateBackend) -> None:
        """An object the state holds in two places loads as one object, a cycle loads
        (docs/format.md, "Shared references and cycles"), across the context and the last
        output alike: the whole state is one value."""
        model = sample_values()["model"]
        items: list[Any] = [1, 2]
        loop: dict[str, Any] = {"name": "loop"}
        loop["self"] = loop
        context = {"items": items, "again": {"items": items}, "model": model, "loop": loop,
                   "copies": [[1, 2], [1, 2]]}
        await backend.save_state("shared", _state("shared", pipeline_context=context,
                                                  last_step_output=model))
        loaded = await backend.load_state("shared")
        assert loaded is not None
        back = loaded["pipeline_context"]
        assert back["again"]["items"] is back["items"] == [1, 2]
        assert loaded["last_step_output"] is back["model"]
        assert_identical(back["model"], model)
        assert back["loop"]["self"] is back["loop"] and back["loop"]["name"] == "loop"
        assert back["copies"][0] is not back["copies"][1]

    async def test_saved_values_are_a_snapshot(self, backend: StateBackend) -> None:
        context: dict[str, Any] = {"items": [1]}
        await backend.save_state("snap", _state("snap", pipeline_context=context))
        context["items"].append(2)
        loaded = await backend.load_state("snap")
        assert loaded is not None and loaded["pipeline_context"] == {"items": [1]}

    async def test_accepts_earlier_flujo_style_dicts(self, backend: StateBackend) -> None:
        earlier = {
            "run_id": "legacy",
            "pipeline_id": "p-1",
            "pipeline_name": "orders",
            "pipeline_version": "3",
            "current_step_index": 2,
            "pipeline_context": {"a": 1},
            "last_step_output": None,
            "step_history": [],
            "status": "running",
            "created_at": "2024-01-01T10:00:00",
            "updated_at": "2024-01-01T10:05:00",
            "error_message": None,
        }
        await backend.save_state("legacy", earlier)
        loaded = await backend.load_state("legacy")
        assert loaded is not None
        assert loaded["pipeline_id"] == "p-1"
        assert loaded["created_at"] == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)

    async def test_overwrite_bumps_revision_keeps_created_at(self, backend: StateBackend) -> None:
        assert await backend.save_state("ow", _state("ow", current_step_index=0)) == 1
        first = await backend.read_envelope("ow")
        assert await backend.save_state("ow", _state("ow", current_step_index=1)) == 2
        record = await backend.load_record("ow")
        assert record is not None and first is not None
        assert record.revision == 2 and record.state.current_step_index == 1
        assert record.envelope.created_at == first.created_at
        assert record.envelope.updated_at >= first.updated_at
        # One owner for each timestamp: the loaded state says what the header and list say.
        assert (record.state.created_at, record.state.updated_at) == (
            first.created_at, record.envelope.updated_at)
        [row] = [r for r in await backend.list_runs() if r["run_id"] == "ow"]
        assert (row["created_at"], row["updated_at"]) == (
            record.state.created_at, record.state.updated_at)

    async def test_an_explicit_created_at_is_kept_on_a_runs_first_save_only(
            self, backend: StateBackend) -> None:
        then = dt.datetime(2021, 5, 4, 3, 2, 1, 123456, tzinfo=dt.UTC)
        assert await backend.save_state("imp", _state("imp", created_at=then)) == 1
        later = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
        assert await backend.save_state("imp", _state("imp", created_at=later)) == 2
        loaded = await backend.load_state("imp")
        assert loaded is not None and loaded["created_at"] == then
        assert loaded["updated_at"] > later

    async def test_cancel_requests(self, backend: StateBackend) -> None:
        try:
            assert not await backend.cancel_requested("cr")
        except NotImplementedError:
            pytest.skip(f"{type(backend).__name__} keeps no cancel requests (optional)")
        await backend.request_cancel("cr")  # a run need not be stored to be asked to stop
        await backend.request_cancel("cr")  # asking twice is asking once
        assert await backend.cancel_requested("cr")
        assert not await backend.cancel_requested("cr-other")
        await backend.clear_cancel_request("cr")
        assert not await backend.cancel_requested("cr")
        await backend.clear_cancel_request("cr")  # clearing nothing is fine
        await backend.save_state("cr", _state("cr"))
        await backend.request_cancel("cr")
        record = await backend.load_record("cr")
        assert record is not None and record.revision == 1  # a request is not a save
        await backend.delete_state("cr")  # a deleted run's request goes with it
        assert not await backend.cancel_requested("cr")

    @pytest.mark.parametrize("run_id", BAD_RUN_IDS)
    async def test_cancel_requests_refuse_bad_run_ids(self, backend: StateBackend,
                                                      run_id: Any) -> None:
        with pytest.raises((InvalidRunIdError, NotImplementedError)):
            await backend.request_cancel(run_id)
        with pytest.raises((InvalidRunIdError, NotImplementedError)):
            await backend.cancel_requested(run_id)

    async def test_upstream_admin_calls(self, backend: StateBackend) -> None:
        """Upstream flujo's SQLite maintenance calls, on every backend (see docs/backends.md)."""
        await backend.save_state("adm-1", _state("adm-1", status="failed", error="boom",
                                                 step_names=["a", "b"], current_step_index=1))
        await backend.save_state("adm-2", _state("adm-2", status="completed"))
        old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        await backend.save_state("adm-3", _state("adm-3", created_at=old))
        stats = await backend.get_workflow_stats()  # type: ignore[attr-defined]
        assert (stats["total_workflows"], stats["recent_workflows_24h"]) == (3, 2)
        assert stats["status_counts"] == {"failed": 1, "completed": 1, "running": 1}
        failed = await backend.get_failed_workflows()  # type: ignore[attr-defined]
        assert [(f["run_id"], f["error_message"], f["current_step_index"], f["total_steps"])
                for f in failed] == [("adm-1", "boom", 1, 2)]
        listed = await backend.list_workflows(status="completed")  # type: ignore[attr-defined]
        assert [w["run_id"] for w in listed] == ["adm-2"]
        for bad in (-1, float("nan"), "7", True):
            with pytest.raises(BackendConfigError):
                await backend.cleanup_old_workflows(days_old=bad)  # type: ignore[attr-defined]
        assert await backend.cleanup_old_workflows(days_old=365) == 1  # type: ignore[attr-defined]
        assert sorted(await backend.list_run_ids()) == ["adm-1", "adm-2"]
        assert await backend.cleanup_old_workflows(days_old=10**6) == 0  # type: ignore[attr-defined]

    async def test_delete(self, backend: StateBackend) -> None:
        await backend.save_state("del", _state("del"))
        await backend.delete_state("del")
        assert await backend.load_state("del") is None
        await backend.delete_state("del")  # absent: not an error
        assert await backend.save_state("del", _state("del")) == 1  # revisions start over

    async def test_list_runs_filters_orders_and_pages(self, backend: StateBackend) -> None:
        for i, (status, pipeline) in enumerate(
            [("running", "a"), ("failed", "a"), ("running", "b"), ("completed", "a")]
        ):
            await backend.save_state(
                f"run-{i}", _state(f"run-{i}", status=status, pipeline_name=pipeline)
            )
        everything = await backend.list_runs()
        assert [r["run_id"] for r in everything] == ["run-3", "run-2", "run-1", "run-0"]
        assert everything[0]["status"] == "completed" and everything[0]["revision"] == 1
        assert {r["run_id"] for r in await backend.list_runs(status="running")} == {
            "run-0",
            "run-2",
        }
        assert [r["run_id"] for r in await backend.list_runs(pipeline_name="a", limit=2)] == [
            "run-3",
            "run-1",
        ]
        assert [r["run_id"] for r in await backend.list_runs(limit=2, offset=1)] == [
            "run-2",
            "run-1",
        ]
        assert await backend.list_runs(status="failed", pipeline_name="b") == []
        assert await backend.list_run_ids() == ["run-0", "run-1", "run-2", "run-3"]
        with pytest.raises(ValueError):
            await backend.list_runs(status="bogus")
        with pytest.raises(ValueError):
            await backend.list_runs(limit=-1)

    # -- compare-and-set and concurrency ---------------------------------------------------

    async def test_expected_revision(self, backend: StateBackend) -> None:
        assert await backend.save_state("cas", _state("cas"), expected_revision=0) == 1
        with pytest.raises(StateConflictError, match="cas"):
            await backend.save_state("cas", _state("cas"), expected_revision=0)
        assert await backend.save_state("cas", _state("cas"), expected_revision=1) == 2
        with pytest.raises(StateConflictError):
            await backend.save_state("cas", _state("cas", error="stale"), expected_revision=1)
        record = await backend.load_record("cas")
        assert record is not None and record.revision == 2 and record.state.error is None
        with pytest.raises(StateConflictError):
            await backend.save_state("absent", _state("absent"), expected_revision=3)
        assert await backend.load_state("absent") is None

    async def test_concurrent_saves_are_never_torn(self, backend: StateBackend) -> None:
        async def save(i: int) -> None:
            blob = [i] * 2000
            await backend.save_state("race", _state("race", pipeline_context={"i": i, "b": blob}))

        await asyncio.gather(*(save(i) for i in range(16)))
        record = await backend.load_record("race")
        assert record is not None and record.revision == 16
        ctx = record.state.pipeline_context
        assert ctx["b"] == [ctx["i"]] * 2000

    async def test_compare_and_set_has_one_winner(self, backend: StateBackend) -> None:
        await backend.save_state("cas1", _state("cas1"))

        async def attempt(i: int) -> bool:
            try:
                await backend.save_state(
                    "cas1", _state("cas1", pipeline_context={"w": i}), expected_revision=1
                )
            except StateConflictError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(10)))
        assert results.count(True) == 1

    async def test_compare_and_set_counter(self, backend: StateBackend) -> None:
        await backend.save_state("ctr", _state("ctr", pipeline_context={"n": 0}))

        async def bump() -> None:
            while True:
                record = await backend.load_record("ctr")
                assert record is not None
                ctx = dict(record.state.pipeline_context)
                ctx["n"] += 1
                try:
                    await backend.save_state(
                        "ctr",
                        _state("ctr", pipeline_context=ctx),
                        expected_revision=record.revision,
                    )
                    return
                except StateConflictError:
                    await asyncio.sleep(0)

        await asyncio.gather(*(bump() for _ in range(12)))
        loaded = await backend.load_state("ctr")
        assert loaded is not None and loaded["pipeline_context"] == {"n": 12}

    # -- bad input -------------------------------------------------------------------------

    async def test_unserializable_value_fails_at_save(self, backend: StateBackend) -> None:
        await backend.save_state("unser", _state("unser", pipeline_context={"ok": 1}))
        bad = _state("unser", pipeline_context={"nested": [{"x": NoSerializer()}]})
        with pytest.raises(UnserializableTypeError, match="NoSerializer"):
            await backend.save_state("unser", bad)
        with pytest.raises(UnserializableTypeError):
            await backend.save_state("unser-new", _state("unser-new", last_step_output=bad))
        record = await backend.load_record("unser")
        assert record is not None and record.revision == 1
        assert record.state.pipeline_context == {"ok": 1}
        assert await backend.load_state("unser-new") is None

    async def test_a_lone_surrogate_is_refused_at_save_naming_its_path(
            self, backend: StateBackend) -> None:
        await backend.save_state("text", _state("text", pipeline_context={"ok": 1}))
        bad = _state("text", pipeline_context={"notes": ["fine", {"body": "bad \udcff"}]})
        with pytest.raises(SerializationError, match="lone surrogate") as info:
            await backend.save_state("text", bad)
        assert info.value.path == "$.pipeline_context.notes[1].body"
        record = await backend.load_record("text")
        assert record is not None and record.revision == 1
        assert record.state.pipeline_context == {"ok": 1}

    @pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=repr)
    async def test_bad_run_ids_are_refused(self, backend: StateBackend, run_id: Any) -> None:
        with pytest.raises(InvalidRunIdError):
            await backend.save_state(run_id, {"status": "running"})
        with pytest.raises(InvalidRunIdError):
            await backend.load_state(run_id)
        with pytest.raises(InvalidRunIdError):
            await backend.delete_state(run_id)
        with pytest.raises(InvalidRunIdError):
            async with backend.claim(run_id):
                pass
        assert await backend.list_run_ids() == []

    async def test_state_for_another_run_is_refused(self, backend: StateBackend) -> None:
        with pytest.raises(InvalidRunIdError, match="does not match"):
            await backend.save_state("one", _state("two"))
        with pytest.raises(InvalidStateError, match="mapping"):
            await backend.save_state("one", ["not", "a", "state"])  # type: ignore[arg-type]
        with pytest.raises(InvalidStateError, match="status"):
            await backend.save_state("one", {"status": "exploded"})
        assert await backend.list_run_ids() == []

    async def test_oversized_state_is_refused_at_save(self, tmp_path: Path) -> None:
        backend = await self.make_backend(tmp_path, max_payload_bytes=10_000)
        try:
            with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
                await backend.save_state("big", _state("big", pipeline_context={"b": "x" * 20_000}))
            assert await backend.load_state("big") is None
        finally:
            await backend.close()

    # -- claims ----------------------------------------------------------------------------

    async def test_claim_is_exclusive_and_released(self, backend: StateBackend) -> None:
        async with backend.claim("job") as claim:
            assert claim.run_id == "job"
            with pytest.raises(RunInProgressError, match="job"):
                async with backend.claim("job"):
                    pass
            async with backend.claim("other-job"):
                pass
        async with backend.claim("job"):
            pass
        with pytest.raises(KeyError):
            async with backend.claim("job"):
                raise KeyError("worker failed")
        async with backend.claim("job"):
            pass

    async def test_claim_holders_name_the_worker_and_since_when(
            self, backend: StateBackend) -> None:
        try:
            assert await backend.claim_holders(["job", "idle"]) == {}
        except NotImplementedError:
            pytest.skip(f"{type(backend).__name__} does not tell claim holders (optional)")
        before = dt.datetime.now(dt.UTC)
        async with backend.claim("job") as claim:
            held = await backend.claim_holders(["job", "idle"])
            assert list(held) == ["job"]
            host, pid, _ = held["job"].holder.split(":")
            assert (host, int(pid)) == (socket.gethostname(), os.getpid())
            assert before - dt.timedelta(seconds=5) <= held["job"].since \
                <= dt.datetime.now(dt.UTC)
            assert held["job"].since.tzinfo is not None
            assert claim.run_id == "job"
        assert await backend.claim_holders(["job"]) == {}
        with pytest.raises(InvalidRunIdError):
            await backend.claim_holders(["../escape"])
        with pytest.raises(BackendConfigError, match="list of run ids"):
            await backend.claim_holders("job")  # a str is a Sequence[str] to mypy

    # -- envelopes, compression, encryption ------------------------------------------------

    async def test_raw_envelope_round_trip(self, backend: StateBackend, tmp_path: Path) -> None:
        await backend.save_state("env", _state("env", pipeline_context={"d": decimal.Decimal(1)}))
        envelope = await backend.read_envelope("env")
        assert envelope is not None
        assert envelope.run_id == "env" and envelope.revision == 1 and envelope.codec == "json"
        assert envelope.manifest["decimal"] == 1
        other = await self.make_backend(tmp_path)
        try:
            assert await other.write_envelope(envelope) == 1
            assert await other.write_envelope(envelope, expected_revision=1) == 2
            with pytest.raises(StateConflictError):
                await other.write_envelope(envelope, expected_revision=1)
            loaded = await other.load_state("env")
            assert loaded is not None
            assert_identical(loaded["pipeline_context"], {"d": decimal.Decimal(1)})
        finally:
            await other.close()

    @pytest.mark.parametrize("compression", ["zlib", "zstd"])
    async def test_compressed_round_trip(self, tmp_path: Path, compression: str) -> None:
        backend = await self.make_backend(tmp_path, compression=compression)
        try:
            values = sample_values()
            await backend.save_state("z", _state("z", pipeline_context=values))
            envelope = await backend.read_envelope("z")
            assert envelope is not None and envelope.codec == f"json+{compression}"
            loaded = await backend.load_state("z")
            assert loaded is not None
            assert_identical(loaded["pipeline_context"], values)
        finally:
            await backend.close()

    async def test_encrypted_round_trip_and_rotation(self, tmp_path: Path) -> None:
        old, new = Encryption.generate_key(), Encryption.generate_key()
        first = await self.make_backend(tmp_path, encryption=Encryption.single(old, "k1"))
        try:
            values = {**sample_values(), "marker": "TOP-SECRET-MARKER"}
            await first.save_state("sec", _state("sec", pipeline_context=values))
            envelope = await first.read_envelope("sec")
            assert envelope is not None and envelope.codec == "json+aesgcm"
            assert envelope.key_id == "k1" and isinstance(envelope.payload, str)
            raw = await self.get_raw(first, "sec")
            assert b"TOP-SECRET-MARKER" not in raw and b"12.340" not in raw
        finally:
            await first.close()
        rotated = await self.make_backend(
            tmp_path, encryption=Encryption({"k1": old, "k2": new}, active_key_id="k2")
        )
        try:
            await self.put_raw(rotated, "sec", raw)
            loaded = await rotated.load_state("sec")
            assert loaded is not None
            assert_identical(loaded["pipeline_context"], values)
            await rotated.save_state("sec", _state("sec"))
            envelope = await rotated.read_envelope("sec")
            assert envelope is not None and envelope.key_id == "k2"
        finally:
            await rotated.close()

    async def test_encryption_rejects_plaintext_tampering_and_moves(self, tmp_path: Path) -> None:
        key = Encryption.single(Encryption.generate_key())
        plain = await self.make_backend(tmp_path)
        secure = await self.make_backend(tmp_path, encryption=key)
        try:
            await plain.save_state("p", _state("p"))
            await self.put_raw(secure, "p", await self.get_raw(plain, "p"))
            with pytest.raises(EncryptionError, match="not encrypted"):
                await secure.load_state("p")
            envelope = await plain.read_envelope("p")
            assert envelope is not None
            with pytest.raises(EncryptionError):
                await secure.write_envelope(envelope)

            await secure.save_state("a", _state("a", pipeline_context={"secret": 1}))
            raw = await self.get_raw(secure, "a")
            data = loads(raw)
            blob = bytearray(base64.b64decode(data["payload"]))
            blob[-1] ^= 1
            data["payload"] = base64.b64encode(bytes(blob)).decode()
            await self.put_raw(secure, "a", dumps(data))
            with pytest.raises(EncryptionError, match="authentication"):
                await secure.load_state("a")
            assert await self.get_raw(secure, "a") == dumps(data)  # left as found

            await secure.save_state("b", _state("b"))
            moved = loads(await self.get_raw(secure, "b"))
            moved["run_id"] = "c"
            await self.put_raw(secure, "c", dumps(moved))
            with pytest.raises(EncryptionError):
                await secure.load_state("c")

            await self.put_raw(plain, "b", await self.get_raw(secure, "b"))
            with pytest.raises(EncryptionError, match="no encryption configured"):
                await plain.load_state("b")
        finally:
            await plain.close()
            await secure.close()

    # -- damaged and future records --------------------------------------------------------

    @pytest.mark.parametrize(
        "raw",
        [b"", b"{", b"[]", b'{"format": "other"}', b'{"format": "flujo.state"}', b"\xff\xfe"],
        ids=["empty", "truncated", "array", "foreign", "incomplete", "binary"],
    )
    async def test_damaged_record_raises_and_is_left_alone(
        self, backend: StateBackend, raw: bytes
    ) -> None:
        await self.put_raw(backend, "bad", raw)
        with pytest.raises(CorruptStateError, match="bad"):
            await backend.load_state("bad")
        assert await self.get_raw(backend, "bad") == raw
        assert "bad" in await backend.list_run_ids()

    async def test_oversized_records_are_refused_unparsed_and_left_alone(
        self, tmp_path: Path
    ) -> None:
        # A store reads no record over max_record_bytes, and no record or decompressed
        # payload with more arrays and objects than max_containers: parsing a hostile one
        # would cost memory and time far beyond its size ([[],[],...] costs 32 times).
        backend = await self.make_backend(tmp_path, max_payload_bytes=_BOUNDED)
        zlib_store = await self.make_backend(tmp_path, max_payload_bytes=_BOUNDED,
                                             compression="zlib")
        codec = _codec_of(backend)
        try:
            cases = {
                "big": _record("big", b'"' + b"x" * codec.max_record_bytes + b'"'),
                "many": _record("many", b"[" + b"[]," * (codec.max_containers + 2048) + b"[]]"),
                "bomb": _record("bomb", b'"' + base64.b64encode(zlib.compress(
                    b"[" + b"[]," * codec.max_containers + b"[]]", 9)) + b'"', "json+zlib"),
            }
            for run_id, raw in cases.items():
                store = zlib_store if run_id == "bomb" else backend
                await self.put_raw(store, run_id, raw)
                with pytest.raises(PayloadTooLargeError, match="over this store's limit"):
                    await store.load_state(run_id)
                assert await self.get_raw(store, run_id) == raw
        finally:
            await backend.close()
            await zlib_store.close()

    async def test_an_encrypting_store_refuses_plaintext_before_parsing_it(
        self, tmp_path: Path
    ) -> None:
        secure = await self.make_backend(
            tmp_path, encryption=Encryption.single(Encryption.generate_key()))
        try:
            # Many arrays, then a value no parser accepts: parsing would be a JSON error.
            raw = _record("p", b"[" + b"[]," * 2000 + b"[]]").replace(b'"json"', b'"json"  ')
            await self.put_raw(secure, "p", raw)
            with pytest.raises(EncryptionError, match="not encrypted"):
                await secure.load_state("p")
            assert await self.get_raw(secure, "p") == raw
        finally:
            await secure.close()

    async def test_a_state_over_the_container_limit_is_refused_at_save(
        self, tmp_path: Path
    ) -> None:
        backend = await self.make_backend(tmp_path, max_payload_bytes=_BOUNDED)
        try:
            dense: list[list[int]] = [[] for _ in range(_codec_of(backend).max_containers)]
            with pytest.raises(PayloadTooLargeError, match="arrays and objects"):
                await backend.save_state("dense", _state("dense", pipeline_context={"d": dense}))
            assert await backend.load_state("dense") is None
        finally:
            await backend.close()

    async def test_truncated_real_record(self, backend: StateBackend) -> None:
        await backend.save_state("cut", _state("cut", pipeline_context=sample_values()))
        raw = await self.get_raw(backend, "cut")
        await self.put_raw(backend, "cut", raw[: len(raw) // 2])
        with pytest.raises(CorruptStateError):
            await backend.load_state("cut")
        assert await self.get_raw(backend, "cut") == raw[: len(raw) // 2]

    async def test_future_versions_are_refused_untouched(self, backend: StateBackend) -> None:
        await backend.save_state("fut", _state("fut", pipeline_context={"d": decimal.Decimal(2)}))
        good = loads(await self.get_raw(backend, "fut"))
        for field, value in [
            ("envelope_version", 99),
            ("manifest", {**good["manifest"], "decimal": 99}),
            ("state_version", 99),
        ]:
            raw = dumps({**good, field: value})
            await self.put_raw(backend, "fut", raw)
            with pytest.raises(FutureVersionError):
                await backend.load_state("fut")
            assert await self.get_raw(backend, "fut") == raw

    async def test_whole_state_migrations(self, tmp_path: Path) -> None:
        v1 = StateMigrations(current_version=1)
        writer = await self.make_backend(tmp_path, migrations=v1)
        try:
            await writer.save_state("mig", _state("mig", pipeline_context={"client": "ACME"}))
            raw = await self.get_raw(writer, "mig")
        finally:
            await writer.close()

        v3 = StateMigrations(current_version=3)

        @v3.register(1)
        def rename(state: dict[str, Any]) -> dict[str, Any]:
            state["pipeline_context"]["customer"] = state["pipeline_context"].pop("client")
            return state

        reader = await self.make_backend(tmp_path, migrations=v3)
        try:
            await self.put_raw(reader, "mig", raw)
            with pytest.raises(MissingMigrationError, match="2 to 3"):
                await reader.load_state("mig")
            assert await self.get_raw(reader, "mig") == raw
            v3.register(2, lambda s: {**s, "pipeline_version": "v3"})
            loaded = await reader.load_state("mig")
            assert loaded is not None
            assert loaded["pipeline_context"] == {"customer": "ACME"}
            assert loaded["pipeline_version"] == "v3"
            assert await self.get_raw(reader, "mig") == raw  # reads never write
        finally:
            await reader.close()

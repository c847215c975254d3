"""Pausing the garbage collector around a large encode or decode (``_collector``).

What must hold: the collector is off only while flujo builds a large value, on again after
(whatever happened meanwhile), left off where the application turned it off, and the
collection the pause put off still runs; results are the same with and without the pause.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from flujo import serialization
from flujo.exceptions import InvalidArgumentError, SerializationError
from flujo.serialization import (
    PAUSE_BYTES,
    TypeRegistry,
    collector_paused,
    deserialize_from_json,
    safe_serialize,
    serialize_to_bytes,
    set_collector_pause,
)
from flujo.serialization._collector import ACTIVE, PAUSE_OBJECTS, PAUSE_STATE
from flujo.state import EnvelopeCodec, WorkflowState
from flujo.state import _envelope_codec as envelope_codec
from flujo.state._jsonio import loads
from flujo.testing import assert_identical


class Reading(BaseModel):
    sensor: str
    value: Decimal
    at: datetime


def readings(count: int) -> dict[str, Any]:
    # sets and tuples take the generic form: many containers, as a decode of a real state
    return {"readings": [Reading(sensor=f"s{i}", value=Decimal(i) / 8,
                                 at=datetime(2024, 1, 1, tzinfo=UTC)) for i in range(count)],
            "seen": [{"tags": {f"t{i}", "x"}, "pair": (i, str(i))} for i in range(count)]}


# Only the compiled module pauses (see _collector); CI also runs these tests interpreted.
paused_only = pytest.mark.skipif(not ACTIVE, reason="the pure-Python form never pauses")


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    """Each test starts with the collector on and pausing enabled, and leaves them so."""
    was_enabled = gc.isenabled()
    gc.enable()
    previous = set_collector_pause(True)
    PAUSE_STATE.owner = None
    try:
        yield
    finally:
        set_collector_pause(previous)
        PAUSE_STATE.owner = None
        if not was_enabled:
            gc.disable()
        else:
            gc.enable()


class Probe:
    """A registered type whose decoding notes whether the collector is on."""

    def __eq__(self, other: object) -> bool:
        return type(other) is Probe

    __hash__ = object.__hash__


def probed_registry() -> tuple[TypeRegistry, list[bool]]:
    registry = TypeRegistry()
    seen: list[bool] = []

    def read(_: Any) -> Probe:
        seen.append(gc.isenabled())
        return Probe()

    registry.register_custom_serializer(Probe, lambda _: 0, deserializer=read, name="probe")
    return registry, seen


class Collections:
    """The collections CPython runs, by generation, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.generations: list[int] = []

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.generations.append(info["generation"])

    def __enter__(self) -> Collections:
        gc.collect()  # start from empty young generations
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        # a put-off collection runs at the next allocation of a container (3.12+: at the
        # interpreter's next check after it); sets, as lists may come from a free list
        for _ in range(3):
            _ = [set() for _ in range(3)]
        gc.callbacks.remove(self)


@paused_only
def test_the_collector_is_off_inside_the_block_and_on_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_the_block_still_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


@paused_only
def test_a_block_inside_a_block_leaves_the_collector_to_the_outer_one() -> None:
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    data = serialize_to_bytes(readings(3_000))
    assert len(data) >= PAUSE_BYTES
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
    serialize_to_bytes(readings(3_000))
    assert not gc.isenabled()
    deserialize_from_json(data)
    assert not gc.isenabled()


@paused_only
def test_small_documents_are_not_paused_for() -> None:
    with collector_paused(PAUSE_BYTES - 1):
        assert gc.isenabled()
    with collector_paused(PAUSE_BYTES):
        assert not gc.isenabled()


def test_pausing_can_be_turned_off_for_the_process() -> None:
    assert set_collector_pause(False) is True
    with collector_paused():
        assert gc.isenabled()
    assert set_collector_pause(True) is False
    with pytest.raises(InvalidArgumentError, match="True or False, got 1"):
        set_collector_pause(1)
    with pytest.raises(InvalidArgumentError, match="an int or None, got '64'"):
        collector_paused("64")


@paused_only
def test_a_large_decode_runs_with_the_collector_off_and_one_collection_after() -> None:
    registry, seen = probed_registry()
    small = serialize_to_bytes([Probe()], registry=registry)
    data = serialize_to_bytes([Probe(), readings(3_000)], registry=registry)
    assert len(small) < PAUSE_BYTES <= len(data)
    deserialize_from_json(small, registry=registry)
    assert seen == [True]  # a small document: nothing paused
    set_collector_pause(False)
    expected = deserialize_from_json(data, registry=registry)
    set_collector_pause(True)
    with Collections() as paused:
        decoded = deserialize_from_json(data, registry=registry)
    assert seen == [True, True, False]
    deserialize_from_json(bytearray(data), registry=registry)
    deserialize_from_json(memoryview(data), registry=registry)
    assert seen == [True, True, False, False, False]
    # the collection the pause put off ran after it, once, and none is left due
    assert len(paused.generations) == 1 and paused.generations[0] in (0, 1)
    assert gc.get_count()[0] <= gc.get_threshold()[0]
    assert_identical(decoded[1], expected[1])


def test_a_block_object_used_twice_leaves_the_collector_on() -> None:
    block = collector_paused()
    with block, block:  # the inner exit ends the pause early: never a collector left off
        pass
    assert gc.isenabled()


def test_the_pure_python_form_never_pauses() -> None:
    """Interpreted, a signal handler could run between turning the collector off and
    recording the claim, and leave it off: only the compiled module pauses."""
    script = ("import gc\nfrom flujo.serialization import collector_paused\n"
              "with collector_paused():\n    print(gc.isenabled())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FLUJO_PURE_PYTHON": "1"},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_interrupted_calls_never_leave_the_collector_off() -> None:
    """Ctrl-C (here SIGALRM raising KeyboardInterrupt) at random moments of large encodes and
    decodes, caught each time and kept, as a REPL keeps the last error (its traceback holds
    the interrupted frames): the collector is on after every one (in a fresh process)."""
    script = textwrap.dedent("""
        import gc, random, signal, sys
        from flujo.serialization import deserialize_from_json, safe_serialize, serialize_to_bytes
        blob = serialize_to_bytes([[i, str(i)] for i in range(7000)])
        value = [[] for _ in range(600)]
        def interrupt(*_):
            raise KeyboardInterrupt
        signal.signal(signal.SIGALRM, interrupt)
        random.seed(int(sys.argv[1]))
        interrupted = left_off = 0
        kept = []
        for i in range(3000):
            try:
                signal.setitimer(signal.ITIMER_REAL, random.uniform(1e-6, 40e-6))
                try:
                    deserialize_from_json(blob) if i % 2 else safe_serialize(value)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except KeyboardInterrupt as error:
                interrupted += 1
                kept.append(error)
                left_off += not gc.isenabled()
        print(interrupted, left_off, gc.isenabled())
    """)
    done = subprocess.run([sys.executable, "-c", script, "7"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    interrupted, left_off, enabled = done.stdout.split()
    assert int(interrupted) > 1000  # the interrupts did land inside the calls
    assert (left_off, enabled) == ("0", "True")


def test_a_signal_handler_that_serializes_cannot_deadlock() -> None:
    """A handler (a SIGTERM handler saving a last checkpoint, say) that encodes a large value,
    run while the code it interrupted is pausing or resuming the collector."""
    script = textwrap.dedent("""
        import gc, random, signal
        from flujo.serialization import safe_serialize
        value = [[] for _ in range(600)]
        handled = 0
        def handler(*_):
            global handled
            safe_serialize(value)
            handled += 1
        signal.signal(signal.SIGALRM, handler)
        random.seed(1)
        for _ in range(5000):
            signal.setitimer(signal.ITIMER_REAL, random.uniform(1e-6, 60e-6))
            safe_serialize(value)
            signal.setitimer(signal.ITIMER_REAL, 0)
        print(handled, gc.isenabled())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    handled, enabled = done.stdout.split()
    assert int(handled) > 100 and enabled == "True"


@paused_only
def test_a_large_parse_of_a_stored_record_is_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def noting(data: bytes) -> Any:
        seen.append(gc.isenabled())
        return loads(data)

    codec = EnvelopeCodec()
    small = WorkflowState(run_id="r-1", pipeline_name="p", pipeline_context={"n": 1},
                          created_at=datetime(2024, 1, 1, tzinfo=UTC),
                          updated_at=datetime(2024, 1, 2, tzinfo=UTC))
    large = small.model_copy(update={"pipeline_context": readings(3_000)})
    records = [codec.seal(codec.encode_state(state), revision=1).raw for state in (small, large)]
    monkeypatch.setattr(envelope_codec, "loads", noting)
    for raw in records:
        codec.parse(raw, what="test")
    assert seen == [True, False]
    assert gc.isenabled()


@paused_only
def test_the_bytes_of_a_large_value_are_written_inside_the_pause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    write = serialization._json_bytes

    def noting(obj: Any, data: Any) -> bytes:
        seen.append(gc.isenabled())
        return write(obj, data)

    monkeypatch.setattr(serialization, "_json_bytes", noting)
    serialize_to_bytes({"n": 1})
    serialize_to_bytes(readings(3_000))
    # the large value's data is gone (written) before the collector resumes: no
    # collection has it to traverse
    assert seen == [True, False]


def test_an_interrupt_inside_a_large_call_leaves_the_collector_on() -> None:
    registry = TypeRegistry()

    def interrupted(_: Any) -> Any:
        raise KeyboardInterrupt

    registry.register_custom_serializer(Probe, interrupted, deserializer=interrupted,
                                        name="probe")
    with pytest.raises(KeyboardInterrupt):
        safe_serialize([[[] for _ in range(PAUSE_OBJECTS)], Probe()], registry=registry)
    assert gc.isenabled()
    writing, _ = probed_registry()
    data = serialize_to_bytes([readings(3_000), Probe()], registry=writing)
    with pytest.raises(KeyboardInterrupt):
        deserialize_from_json(data, registry=registry)
    assert gc.isenabled()


@paused_only
def test_an_encode_pauses_once_it_has_met_many_containers() -> None:
    registry = TypeRegistry()
    enabled: list[bool] = []

    def write(_: Probe) -> int:
        enabled.append(gc.isenabled())
        return 0

    registry.register_custom_serializer(Probe, write, name="probe", deserializer=lambda _: Probe())
    safe_serialize([Probe(), [[] for _ in range(PAUSE_OBJECTS)], Probe()], registry=registry)
    assert enabled == [True, False]  # off once the value proved large
    assert gc.isenabled()
    value = readings(3_000)
    set_collector_pause(False)
    expected = serialize_to_bytes(value)
    set_collector_pause(True)
    with Collections() as paused:
        data = serialize_to_bytes(value)
    assert data == expected
    # what the encode built is gone before the collector resumed: at most the young
    # collection the containers before the pause started
    assert len(paused.generations) <= 1


def test_an_encode_that_fails_turns_the_collector_back_on() -> None:
    class Fragile:
        pass

    registry = TypeRegistry()

    def boom(_: Fragile) -> Any:
        raise RuntimeError("boom")

    registry.register_custom_serializer(Fragile, boom, name="fragile")
    with pytest.raises(SerializationError, match="boom") as info:
        safe_serialize([[[] for _ in range(PAUSE_OBJECTS)], Fragile()], registry=registry)
    assert info.value.path == "$[1]"
    assert gc.isenabled()


def test_overlapping_threads_leave_the_collector_on() -> None:
    data = serialize_to_bytes(readings(2_000))
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                deserialize_from_json(data)
                serialize_to_bytes(readings(600))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert gc.isenabled()


@paused_only
def test_a_state_backend_load_decodes_with_the_collector_off() -> None:
    registry, seen = probed_registry()
    codec = EnvelopeCodec(registry=registry)
    context = {"probe": Probe(), **readings(3_000)}
    state = WorkflowState(run_id="r-1", pipeline_name="p", pipeline_context=context,
                          created_at=datetime(2024, 1, 1, tzinfo=UTC),
                          updated_at=datetime(2024, 1, 2, tzinfo=UTC))
    sealed = codec.seal(codec.encode_state(state), revision=1)
    assert len(sealed.raw) >= PAUSE_BYTES
    set_collector_pause(False)
    expected = codec.open(codec.parse(sealed.raw, what="test"), what="test")
    set_collector_pause(True)
    opened = codec.open(codec.parse(sealed.raw, what="test"), what="test")
    assert seen == [True, False]
    assert gc.isenabled()
    assert_identical(opened.pipeline_context, expected.pipeline_context)
    assert_identical(opened.pipeline_context, context)

"""``rows@3``: rows whose datetimes pydantic-core cannot write as they are hold flujo's text.

A datetime in an IANA zone, with a named offset, an offset of seconds or ``fold=1`` would come
back changed from pydantic's JSON; its model used to leave the typed form, and a whole list
of such events was written model by model in the generic form. The general row reader now
writes such a datetime as the text the generic form uses for it (``_datetimes``), and the
list is tagged ``rows@3``, which flujo 0.13 and older refuse (its manifest says so); a list
without such a datetime is still ``rows@2``, which they read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, NaiveDatetime

from flujo.exceptions import DeserializationError, SerializationError
from flujo.serialization import (
    TAG,
    VALUE,
    TypeRegistry,
    UnknownTypeWarning,
    encode_with_manifest,
    merge_manifests,
    safe_deserialize,
    safe_serialize,
    serialize_to_bytes,
)
from flujo.state import InMemoryBackend, WorkflowState, migrate_all

from ._support import assert_same

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


class Event(BaseModel):
    n: int
    at: datetime
    note: str = ""


class Trip(BaseModel):
    legs: list[Event]
    stops: dict[str, datetime]
    times: list[datetime | None]
    first: Event | None = None


class Strict(BaseModel):
    aware: AwareDatetime
    naive: NaiveDatetime


def through_json(data: Any, registry: TypeRegistry) -> Any:
    return safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)


@pytest.fixture
def registry() -> TypeRegistry:
    return TypeRegistry()


def test_events_in_iana_zones_are_rows_with_their_datetimes_as_text(
        registry: TypeRegistry) -> None:
    events = [Event(n=1, at=datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK)),
              Event(n=2, at=datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)),
              Event(n=3, at=datetime(2024, 1, 1, 12, tzinfo=UTC)),
              Event(n=4, at=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))),
              Event(n=5, at=datetime(2024, 7, 1, tzinfo=PARIS), note="x")]
    data, manifest = encode_with_manifest(events, registry=registry)
    assert data[TAG] == "rows@3" and manifest["rows"] == 3
    _, fields, rows = data[VALUE]
    assert fields == ["n", "at", "note", "$unset"]
    at = fields.index("at")
    assert [row[at] for row in rows] == [
        "2024-03-10T01:30:00-05:00[America/New_York]",
        "2024-11-03T01:30:00-05:00[America/New_York]",  # the later 01:30: its offset says so
        "2024-01-01T12:00:00Z",  # as pydantic writes it, in the same rows
        "2024-01-01T12:00:00+02:00",
        "2024-07-01T00:00:00+02:00[Europe/Paris]"]
    assert [row[-1] for row in rows] == [["note"]] * 4 + [None]
    back = through_json(data, registry)
    assert_same(back, events)
    assert all(event.at.tzinfo is PARIS for event in back[4:])  # the zone itself


def test_a_list_without_such_datetimes_stays_readable_by_older_releases(
        registry: TypeRegistry) -> None:
    plain = [Event(n=1, at=datetime(2024, 1, 1, tzinfo=UTC)),
             Event(n=2, at=datetime(2024, 1, 1))]
    data, manifest = encode_with_manifest(plain, registry=registry)
    assert data[TAG] == "rows@2" and manifest["rows"] == 2  # what flujo 0.12 and 0.13 read
    zoned = [Event(n=3, at=datetime(2024, 1, 1, tzinfo=PARIS)), plain[0].model_copy()]
    both, manifest = encode_with_manifest(
        {"a": plain, "b": zoned, "c": [event.model_copy() for event in plain]},
        registry=registry)
    assert [both[key][TAG] for key in "abc"] == ["rows@2", "rows@3", "rows@2"]
    assert manifest["rows"] == 3  # the newest version the document holds


def test_nested_and_contained_datetimes_take_their_text_too(registry: TypeRegistry) -> None:
    trip = Trip(legs=[Event(n=1, at=datetime(2024, 5, 1, 9, tzinfo=PARIS), note="a")],
                stops={"lyon": datetime(2024, 5, 1, 11, tzinfo=PARIS),
                       "utc": datetime(2024, 5, 1, 12, tzinfo=UTC)},
                times=[None, datetime(2024, 5, 1, fold=1),
                       datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=-5), "EST"))],
                first=Event(n=0, at=datetime(2024, 5, 1, tzinfo=NEW_YORK), note="b"))
    trips = [trip, trip.model_copy(deep=True)]
    data, manifest = encode_with_manifest(trips, registry=registry)
    assert data[TAG] == "rows@3" and manifest["rows"] == 3
    assert "2024-05-01T00:00:00[fold=1]" in orjson.dumps(data).decode()
    assert "2024-05-01T00:00:00-05:00[tzname=EST]" in orjson.dumps(data).decode()
    assert_same(through_json(data, registry), trips)
    one, one_manifest = encode_with_manifest(trip, registry=registry)  # the one-row form
    assert len(one[VALUE]) == 2 and one_manifest["rows"] == 3
    assert_same(through_json(one, registry), trip)


def test_aware_and_naive_fields_keep_their_constraints(registry: TypeRegistry) -> None:
    value = Strict(aware=datetime(2024, 1, 1, tzinfo=PARIS), naive=datetime(2024, 1, 1))
    value.__dict__["naive"] = datetime(2024, 1, 1, fold=1)  # a naive datetime still
    data, _ = encode_with_manifest([value, value.model_copy()], registry=registry)
    assert data[TAG] == "rows@3"
    assert_same(through_json(data, registry), [value, value.model_copy()])
    wrong = value.model_copy()
    wrong.__dict__["naive"] = datetime(2024, 1, 1, tzinfo=PARIS)  # pydantic would refuse it
    data = safe_serialize([wrong, value], registry=registry)
    assert type(data) is list  # each model in the generic form, which keeps it as it is
    assert_same(through_json(data, registry), [wrong, value])


class Local(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


def test_a_zone_flujo_cannot_store_is_refused_with_its_path(registry: TypeRegistry) -> None:
    events = [Event(n=1, at=datetime(2024, 1, 1, tzinfo=PARIS)),
              Event(n=2, at=datetime(2024, 1, 1, tzinfo=Local()))]
    with pytest.raises(SerializationError, match="Local") as caught:
        safe_serialize(events, registry=registry)
    assert caught.value.path == "$[1].at"
    with pytest.raises(SerializationError, match="Local"):
        serialize_to_bytes(events, registry=registry)


def _stored(at_text: str, registry: TypeRegistry) -> Any:
    data = safe_serialize([Event(n=1, at=datetime(2024, 1, 1, tzinfo=PARIS)),
                           Event(n=2, at=datetime(2024, 1, 1, tzinfo=PARIS))], registry=registry)
    fields = data[VALUE][1]
    data[VALUE][2][1][fields.index("at")] = at_text
    return orjson.loads(orjson.dumps(data))


@pytest.mark.parametrize("text", [
    "2024-01-01T00:00:00+01:00[Mars/Olympus_Mons]",  # not a zone of the database
    "2024-01-01T00:00:00+01:00[../../../etc/passwd]",
    "2024-01-01T00:00:00+05:00[Europe/Paris]",  # not Paris's offset then
    "2024-10-27T02:30:00+03:00[Europe/Paris]",  # neither of that wall time's offsets
    "2024-01-01T00:00:00[Europe/Paris]",  # no offset
    "2024-01-01T00:00:00+01:00[Europe/Paris",
    "yesterday",
])
def test_a_damaged_stored_datetime_is_refused_where_it_is(
        registry: TypeRegistry, text: str) -> None:
    with pytest.raises(DeserializationError, match="datetime") as caught:
        safe_deserialize(_stored(text, registry), registry=registry)
    assert caught.value.path == "$[1].at"


def test_a_model_migration_gets_the_datetime_text_and_its_result_is_read() -> None:
    old, new = TypeRegistry(), TypeRegistry()

    class Meeting(BaseModel):
        at: datetime
        room: str = "a"

    old.register_type(Meeting, name="meeting", version=1)
    stored = safe_serialize(Meeting(at=datetime(2024, 6, 1, 9, tzinfo=PARIS)), registry=old)
    assert len(stored[VALUE]) == 2  # the one-row form, with the datetime's text
    seen: list[Any] = []

    def rename_room(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(value[0]["at"])
        return [{**value[0], "room": "b"}]

    new.register_type(Meeting, name="meeting", version=2, migrations={1: rename_room})
    back = safe_deserialize(orjson.loads(orjson.dumps(stored)), registry=new)
    assert seen == ["2024-06-01T09:00:00+02:00[Europe/Paris]"]
    assert back.room == "b" and back.at.tzinfo is PARIS and back.at.hour == 9


def test_manifests_merge_to_the_newest_version_of_each_name() -> None:
    assert merge_manifests({"rows": 3, "a": 1}, {"rows": 2, "b": 4}, {}) == {
        "a": 1, "b": 4, "rows": 3}
    assert list(merge_manifests({"z": 1}, {"a": 1})) == ["a", "z"]


def test_a_saved_state_names_rows_3_in_its_manifest_only_when_it_holds_them() -> None:
    backend = InMemoryBackend()
    zoned = [Event(n=1, at=datetime(2024, 1, 1, tzinfo=PARIS)),
             Event(n=2, at=datetime(2024, 1, 2, tzinfo=NEW_YORK))]
    plain = [Event(n=3, at=datetime(2024, 1, 3, tzinfo=UTC)),
             Event(n=4, at=datetime(2024, 1, 4, tzinfo=UTC))]

    async def scenario() -> tuple[list[tuple[dict[str, int], Any]], list[str]]:
        saved = []
        for run_id, events in (("zoned", zoned), ("plain", plain)):
            await backend.save_state(run_id, WorkflowState(
                run_id=run_id, pipeline_name="p", pipeline_context={"events": events}))
            envelope = await backend.read_envelope(run_id)
            assert envelope is not None
            record = await backend.load_record(run_id)
            assert record is not None
            saved.append((envelope.manifest, record.state))
        # rows@2 is what this code writes for those rows: nothing to migrate
        return saved, (await migrate_all(backend)).up_to_date

    saved, up_to_date = asyncio.run(scenario())
    (zoned_manifest, zoned_back), (plain_manifest, plain_back) = saved
    assert sorted(up_to_date) == ["plain", "zoned"]
    assert zoned_manifest["rows"] == 3 and plain_manifest["rows"] == 2
    assert_same(zoned_back.pipeline_context["events"], zoned)
    assert_same(plain_back.pipeline_context["events"], plain)


_ZONES = st.sampled_from([
    PARIS, NEW_YORK, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC"),
    UTC, timezone(timedelta(hours=5, minutes=45)), timezone(timedelta(hours=-3), "BRT"),
    timezone(timedelta(seconds=-59))])
_DATETIMES = st.one_of(
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1),
                 timezones=st.none() | _ZONES, allow_imaginary=False),
    st.builds(datetime.combine, st.dates(min_value=date(1900, 1, 1)),
              st.times(), st.none() | _ZONES).map(lambda d: d.replace(fold=1)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.builds(Event, n=st.integers(0, 10), at=_DATETIMES), min_size=2, max_size=8))
def test_any_events_round_trip_exactly_as_the_generic_form_brings_them_back(
        events: list[Event]) -> None:
    registry = _SHARED
    data = safe_serialize(events, registry=registry)
    assert serialize_to_bytes(events, registry=registry) == orjson.dumps(data)
    back = through_json(data, registry)
    assert_same(back, events)
    generic = through_json(safe_serialize(events, registry=_GENERIC), _GENERIC)
    assert_same(back, generic)  # the reference: each model in the generic form


_SHARED = TypeRegistry()
_GENERIC = TypeRegistry(model_rows=False)


def test_a_zone_read_from_a_file_has_no_name_to_store_and_is_refused(
        registry: TypeRegistry) -> None:
    with open("/usr/share/zoneinfo/Europe/Paris", "rb") as file:  # the system's database
        unnamed = ZoneInfo.from_file(file)
    at = datetime(2024, 1, 1, tzinfo=unnamed)
    for value, path in (([Event(n=1, at=at), Event(n=2, at=at)], "$[0].at"),
                        (Event(n=1, at=at), "$.at"), (at, "$"), ([unnamed], "$[0]")):
        for write in (safe_serialize, serialize_to_bytes):
            with pytest.raises(SerializationError, match="no key") as caught:
                write(value, registry=registry)
            assert caught.value.path == path


def test_the_machines_own_zone_is_refused_not_stored_by_a_name_others_misread(
        registry: TypeRegistry) -> None:
    try:
        local = ZoneInfo("localtime")  # where the system's database lists it
    except (ZoneInfoNotFoundError, ValueError):
        pytest.skip("this system's time zone database has no 'localtime'")
    with pytest.raises(SerializationError, match="this machine's own"):
        safe_serialize([Event(n=1, at=datetime(2024, 1, 1, tzinfo=local))] * 2,
                       registry=registry)


def test_a_kept_undecoded_value_puts_its_tags_in_the_manifest(registry: TypeRegistry) -> None:
    # read where the class is unknown (strict=False), then saved again: the record's
    # manifest must still say rows: 3, or flujo 0.13 would take it for one it can read
    registry.register_type(Event, name="app.event", version=4)
    for value in ([Event(n=1, at=datetime(2024, 1, 1, tzinfo=PARIS)),
                   Event(n=2, at=datetime(2024, 1, 1, tzinfo=PARIS))],
                  Event(n=3, at=datetime(2024, 1, 1, tzinfo=PARIS))):  # and one row
        stored = orjson.loads(orjson.dumps(safe_serialize(value, registry=registry)))
        with pytest.warns(UnknownTypeWarning):
            kept = safe_deserialize(stored, registry=TypeRegistry(), strict=False)
        data, manifest = encode_with_manifest({"kept": kept}, registry=TypeRegistry())
        assert data["kept"] == stored
        assert manifest == ({"app.event": 4, "rows": 3} if type(value) is list
                            else {"app.event": 4})

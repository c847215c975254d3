"""Incremental encoding: the rows of records written once, reused while unchanged.

A run's context changes in place from one save to the next, and what grows is most often a
list of records (messages, events, results): one model class whose fields hold immutable
values (``_guard.record_fields``). Encoded in rows (``rows@2``), such a list costs a check and
a row per record at every save, so a run that appends one record per step would spend time
per save in proportion to everything it has gathered.

An ``EncodingMemo`` remembers, for each such list an encoding wrote, the records it held and
each one's field values (the objects themselves) and row. The next encoding with that memo
reuses the row of every record that is still the same object, of the same class, holding the
same field objects, exactly its fields set, no extras and no private values: everything the
row depends on, since those values cannot change in place (short of writing to their private
slots, an enum member's ``_value_`` or a UUID's ``int``, which nothing supports). Every other
record is checked and written as it would be without the memo, so the output is the same,
byte for byte (a differential test holds the two paths to that). Nothing here changes what
is stored.

A memo describes the objects of one live value: the state layer keeps one per running run,
beside the record the backend wrote last (``ChainTip``), and drops it with that record.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from ._codec import RepeatedInTypedWalk
from ._guard import Ineligible, Uncompilable, record_fields
from ._typed import TypedModel

__all__ = ["EncodingMemo"]

_ABSENT: Final = object()


class _Written:
    """What one encoding wrote for one list: the list, its records then, each record's field
    values (its row tuple before writing) and its row."""

    __slots__ = ("items", "records", "rows", "values")

    def __init__(self, items: list[Any], records: list[Any], values: list[Any],
                 rows: list[Any]) -> None:
        self.items = items
        self.records = records
        self.values = values
        self.rows = rows


# What a list no encoding wrote before is compared with: no records.
_NOTHING: Final = _Written([], [], [], [])


class _Fields:
    """The field names of a record class (see ``record_fields``), as a tuple and as a set."""

    __slots__ = ("name_set", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.name_set = frozenset(names)


# Per class: its fields when its records can be reused, else None.
_RECORDS: Final[weakref.WeakKeyDictionary[type, _Fields | None]] = weakref.WeakKeyDictionary()


def _record_class(cls: type[BaseModel]) -> _Fields | None:
    try:
        return _RECORDS[cls]
    except KeyError:
        pass
    names = record_fields(cls)
    fields = None if names is None else _Fields(names)
    _RECORDS[cls] = fields
    return fields


class EncodingMemo:
    """The rows an encoding wrote for lists of records, for the next encoding of the same
    live value to reuse (see the module's docstring). Give each encoding a new memo made
    from the last one: ``EncodingMemo(last)``; ``last`` itself is not changed."""

    __slots__ = ("known", "written")

    def __init__(self, last: EncodingMemo | None = None) -> None:
        self.known: dict[int, _Written] = {} if last is None else last.written
        self.written: dict[int, _Written] = {}

    def finish(self) -> None:
        """Forget the last encoding's rows (this memo keeps only its own)."""
        self.known = {}

    def dump_rows(self, typed: TypedModel, items: list[Any],
                  keep: Callable[[Any], Any]) -> list[Any] | None:
        """``typed.dump_rows(items, keep)``, reusing the rows of the records unchanged since
        the last encoding."""
        if typed.shape is None:
            return typed.dump_rows(items, keep)
        fields = _record_class(typed.cls)
        if fields is None:
            return typed.dump_rows(items, keep)
        try:
            read_rows, serializer = typed._rows()
        except (Ineligible, Uncompilable):
            return typed.dump_rows(items, keep)  # (which notes that the class has no rows)
        known = self.known.get(id(items))
        if known is None or known.items is not items:
            known = _NOTHING
        records, old_values, old_rows = known.records, known.values, known.rows
        count = min(len(items), len(records))
        values: list[Any] = []
        rows: list[Any] = []
        fresh: list[int] = []  # the positions of the records written now
        for i in range(len(items)):
            record = items[i]
            if i < count:
                old = old_values[i]
                if record is records[i] and _unchanged(record, old, typed.cls, fields):
                    try:
                        keep(record)  # as the row reader notes it
                    except RepeatedInTypedWalk:  # met before: see Encoder.note_walked
                        return None
                    values.append(old)
                    rows.append(old_rows[i])
                    continue
            fresh.append(i)
            values.append(None)
            rows.append(None)
        if fresh:
            try:
                read: list[Any] | None = read_rows([items[i] for i in fresh], keep)
                if read is None:
                    return None
                written = serializer.to_python(read, mode="json")
            except (RecursionError, PydanticSerializationError, ValueError):  # as dump_rows
                return None
            for j in range(len(fresh)):
                values[fresh[j]] = read[j]
                rows[fresh[j]] = written[j]
        self.written[id(items)] = _Written(items, list(items), values, rows)
        return rows


def _unchanged(record: Any, values: tuple[Any, ...], cls: Any, fields: _Fields) -> bool:
    """Whether ``record`` still has the row it had when it held ``values``: the same class,
    exactly its fields (the same objects, all of them set), no extras, no private values."""
    if type(record) is not cls:
        return False
    try:
        state: Any = record.__dict__
        names = fields.names
        # (a dict subclass could answer subscripts, which the row reader uses, otherwise)
        if type(state) is not dict or len(state) != len(names):
            return False
        for i in range(len(names)):
            if state.get(names[i], _ABSENT) is not values[i]:
                return False
        return (not record.__pydantic_extra__ and record.__pydantic_private__ is None
                and record.__pydantic_fields_set__ == fields.name_set)
    except AttributeError:  # a deleted pydantic slot: the row reader refuses it
        return False

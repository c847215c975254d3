"""The record the registry keeps for each type it can encode and decode."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

Kind = Literal["builtin", "custom", "model", "dataclass", "enum", "namedtuple", "scalar",
               "v1model"]
# The kinds whose tagged objects may carry a state (``s``, docs/format.md).
STATEFUL_KINDS: frozenset[str] = frozenset({"model", "dataclass", "scalar", "v1model"})
Migration = Callable[[Any], Any]
JSONSchema = dict[str, Any]

# Migrations that return the stored value as it is: a version that only added forms (rows@2
# is rows@1 with more it may say). The older version is then read by the current decoder
# directly, without the copy that migrations get (they may mutate what they are given).
_UNCHANGED: set[Migration] = set()


def unchanged(step: Migration) -> Migration:
    """Mark ``step`` as returning its input as it is (see ``_UNCHANGED``)."""
    _UNCHANGED.add(step)
    return step


def changes_nothing(step: Migration) -> bool:
    return step in _UNCHANGED


@dataclass(frozen=True, eq=False)
class TypeCodec:
    """How one type is written and read.

    ``encode_value(encoder, obj, depth)`` returns the encoded ``v`` of the tagged object and
    ``decode_value(decoder, v, depth)`` rebuilds the object from it. ``schema`` is the JSON
    Schema of ``v``; ``None`` means "derive it from ``py_type``" (models, dataclasses, ...).
    ``migrations[n]`` upgrades an encoded ``v`` from version ``n`` to ``n + 1``.
    """

    name: str
    version: int
    kind: Kind
    py_type: type | None
    encode_value: Callable[[Encoder, Any, int], Any] | None
    decode_value: Callable[[Decoder, Any, int], Any] | None
    schema: JSONSchema | None = None
    validate: bool = False
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""
    # Older versions this codec still writes, for values that need nothing newer (rows@2
    # beside rows@3), so that older readers keep reading them; the format schema describes
    # them with the current version's schema.
    also_writes: tuple[int, ...] = ()
    declared_schema: bool = True
    serializer: Callable[[Any], Any] | None = None
    # For types whose encoded value needs no encoder (a UUID's string, ...): the conversion
    # ``obj -> v`` itself, preferably a C callable. Containers then call the type's plan
    # directly instead of going through Encoder.encode (a hot-path shortcut).
    leaf: Callable[[Any], Any] | None = None
    # Deprecated (removed in 1.0): the deserializer a custom type was registered with, kept
    # so that code reading it goes on working; flujo reads ``decode_value``, which calls it.
    deserializer: Callable[[Any], Any] | None = None
    # The reading counterpart, for types stored as one string: ``text -> obj``, pure (no
    # decoder, no side effects). The decoder calls it directly for the current version's
    # tag; when it raises, the value is read again through ``decode_value``, whose error
    # says what went wrong, so both must refuse exactly the same texts.
    from_text: Callable[[str], Any] | None = None
    # Models and dataclasses: ``obj -> (v, state or None)``, the state being the tagged
    # object's ``s`` (the instance state beyond the field values, docs/format.md); their
    # ``encode_value`` gives ``v`` alone.
    encode_object: Callable[[Encoder, Any, int], tuple[Any, Any]] | None = None
    # Models: a whole list of them in the typed form at the current version, read in one
    # call: ``models@1``'s items (``read_typed_list(items)``), or rows with the fields they
    # were written with (``read_typed_rows(rows, stored_shape)``, ``_rows``).
    read_typed_list: Callable[[list[Any]], list[Any]] | None = None
    read_typed_rows: Callable[[Any, Any], list[Any]] | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

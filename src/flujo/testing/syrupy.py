"""A syrupy extension that pins the serialized form of values in snapshot files.

``snapshot.use_extension(FlujoSnapshotExtension)`` stores ``safe_serialize(value)`` (the tagged
form flujo persists) as indented JSON, keys in the order flujo writes them, one ``.json`` file
per snapshot. A change in how one of your types is stored then shows up as a snapshot diff in
review, and ``pytest --snapshot-update`` records it deliberately. Before a value is pinned it
must survive ``assert_round_trip``, so a pinned form is one that reads back.

Snapshots go where syrupy puts them (``__snapshots__/<test module>/`` next to the tests)
unless you choose a folder: ``FlujoSnapshotExtension.in_folder(path)``, or a subclass that
overrides syrupy's ``dirname`` classmethod. See docs/testing.md.
"""

from __future__ import annotations

from collections import OrderedDict
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

try:
    from syrupy.extensions.json import JSONSnapshotExtension
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "flujo.testing.FlujoSnapshotExtension needs syrupy: pip install 'syrupy>=4.6'"
    ) from exc

from ..serialization import TypeRegistry, safe_serialize
from ._compare import assert_round_trip

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData

__all__ = ["FlujoSnapshotExtension"]


def _ordered(data: Any) -> Any:
    """Objects as OrderedDicts, which syrupy's JSON writer keeps in their own order."""
    if type(data) is dict:
        return OrderedDict((key, _ordered(value)) for key, value in data.items())
    if type(data) is list:
        return [_ordered(item) for item in data]
    return data


class FlujoSnapshotExtension(JSONSnapshotExtension):
    """Snapshots of ``safe_serialize(value)``: deterministic, indented JSON.

    Class attributes (set them in a subclass, or pass them to ``in_folder``):

    * ``registry``: the ``TypeRegistry`` to serialize with
      (``None``: the global registry).
    * ``check_round_trip``: run ``assert_round_trip`` on every value
      before pinning it (default ``True``).

    ``exclude``/``include``/``matcher`` of ``snapshot(...)`` apply to the serialized form
    (paths go through ``"$t"`` and ``"v"`` keys of tagged values).
    """

    registry: ClassVar[TypeRegistry | None] = None
    check_round_trip: ClassVar[bool] = True

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        if self.check_round_trip:
            assert_round_trip(data, registry=self.registry)
        tagged = safe_serialize(data, registry=self.registry)
        return super().serialize(_ordered(tagged), exclude=exclude, include=include,
                                 matcher=matcher)

    @classmethod
    def in_folder(
        cls,
        folder: str | PathLike[str],
        *,
        registry: TypeRegistry | None = None,
        check_round_trip: bool | None = None,
    ) -> type[FlujoSnapshotExtension]:
        """A subclass storing snapshots in ``<folder>/<test module>/<test name>.json``."""
        root = Path(folder)
        parent = cls

        class InFolder(parent):  # type: ignore[valid-type, misc]
            @classmethod
            def dirname(cls, *, test_location: PyTestLocation) -> str:
                return str(root / test_location.basename)

        InFolder.registry = registry if registry is not None else parent.registry
        if check_round_trip is not None:
            InFolder.check_round_trip = check_round_trip
        InFolder.__qualname__ = InFolder.__name__ = f"{parent.__name__}InFolder"
        result: type[FlujoSnapshotExtension] = InFolder
        return result

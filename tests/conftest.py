"""Shared pytest configuration.

Snapshots live in the top-level ``snapshots/`` folder, one directory per test module
(``snapshots/<test module>/<test name>.json``), so they are easy to review in one place and
are not scattered through ``tests/``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_ROOT = REPO_ROOT / "snapshots"


def _keep_key_order(value: Any) -> Any:
    """Dicts as OrderedDicts, which syrupy's JSON extension writes in their own order."""
    if isinstance(value, dict):
        return OrderedDict((key, _keep_key_order(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_keep_key_order(item) for item in value]
    return value


class TopLevelJSONSnapshotExtension(JSONSnapshotExtension):
    """JSON snapshots stored under ``<repo>/snapshots/<test module>/``.

    Dict keys are written in their own order (syrupy sorts them by default), so a snapshot of
    JSON data pins the precise output of the code under test, key order included.
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        return super().serialize(
            _keep_key_order(data), exclude=exclude, include=include, matcher=matcher)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(TopLevelJSONSnapshotExtension)

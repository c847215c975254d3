"""Test helpers for applications that persist their own types with flujo.

* ``assert_round_trip`` - a value survives ``safe_serialize``, strict JSON and
  ``safe_deserialize`` with exactly the same types at every level.
* ``assert_identical`` - the comparison it uses: equal values, identical types.
* ``FlujoSnapshotExtension`` - a syrupy extension that pins a value's serialized form in
  a snapshot file (needs ``syrupy``; lives in ``flujo.testing.syrupy``).
* ``BackendContract`` - the contract test suite every state backend passes, to run
  against your own ``StateBackend`` (needs ``pytest`` and ``pytest-asyncio``), with
  ``BAD_RUN_IDS`` and ``sample_values``. ``flujo.state.testing``, its earlier home,
  still works and warns.

Only the first two are imported eagerly, so ``import flujo.testing`` needs neither pytest nor
syrupy. See docs/testing.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._compare import assert_identical, assert_round_trip

if TYPE_CHECKING:
    from ._contract import BackendContract
    from ._samples import BAD_RUN_IDS, sample_values
    from .syrupy import FlujoSnapshotExtension

__all__ = [
    "BAD_RUN_IDS",
    "BackendContract",
    "FlujoSnapshotExtension",
    "assert_identical",
    "assert_round_trip",
    "sample_values",
]

_LAZY = {
    "BAD_RUN_IDS": "flujo.testing._samples",
    "BackendContract": "flujo.testing._contract",
    "sample_values": "flujo.testing._samples",
    "FlujoSnapshotExtension": "flujo.testing.syrupy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

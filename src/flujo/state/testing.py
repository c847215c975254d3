"""Deprecated home of the backend contract suite: import it from ``flujo.testing``.

``from flujo.state.testing import BackendContract`` keeps working and warns
(``DeprecationWarning``) when a name is taken from here. ``assert_same`` is
``flujo.testing.assert_identical``, which is stricter: it also tells apart time zones
(pydantic's ``TzInfo`` and ``datetime.timezone``), model extras and private attributes.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["BAD_RUN_IDS", "BackendContract", "assert_same", "sample_values"]  # noqa: F822

_MOVED = {
    "BAD_RUN_IDS": "BAD_RUN_IDS",
    "BackendContract": "BackendContract",
    "sample_values": "sample_values",
    "assert_same": "assert_identical",
}


def _assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """The earlier ``assert_same(actual, expected, path)``: ``assert_identical``, whose
    messages carry their own path (``path`` is taken and ignored)."""
    import flujo.testing

    flujo.testing.assert_identical(actual, expected)


def __getattr__(name: str) -> Any:
    new_name = _MOVED.get(name)
    if new_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"flujo.state.testing.{name} moved: use flujo.testing.{new_name} "
        "(flujo.state.testing will be removed in flujo 1.0)",
        DeprecationWarning, stacklevel=2)
    if name == "assert_same":
        return _assert_same
    import flujo.testing
    return getattr(flujo.testing, new_name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED])

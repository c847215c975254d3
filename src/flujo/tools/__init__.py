"""Deprecated name of ``flujo.schema`` (until 0.17.0): its names still work from here, and warn."""

from __future__ import annotations

import warnings
from typing import Any

from ..schema import __all__ as _HANDED_OVER

__all__ = list(_HANDED_OVER)  # each handed over by __getattr__, with the warning


def __getattr__(name: str) -> Any:
    import flujo.schema

    if name not in _HANDED_OVER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"flujo.tools is now flujo.schema: use flujo.schema.{name} (flujo.tools will"
                  " be removed in flujo 1.0)", DeprecationWarning, stacklevel=2)
    return getattr(flujo.schema, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HANDED_OVER])

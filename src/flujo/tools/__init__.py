"""Deprecated name of ``flujo.schema`` (until 0.17.0): its names still work from here, and warn."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = [  # each handed over by __getattr__, with the warning
    "MODES",
    "Finding",
    "Narrowing",
    "TypeDoc",
    "check_folder",
    "collect",
    "committed_type_schemas",
    "documents",
    "export",
    "narrowings",
    "render_html",
    "render_json",
    "schema_documents",
    "stale_files",
]


def __getattr__(name: str) -> Any:
    import flujo.schema

    if name not in flujo.schema.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"flujo.tools is now flujo.schema: use flujo.schema.{name} (flujo.tools will"
                  " be removed in flujo 1.0)", DeprecationWarning, stacklevel=2)
    return getattr(flujo.schema, name)


def __dir__() -> list[str]:
    import flujo.schema

    return sorted([*globals(), *flujo.schema.__all__])
